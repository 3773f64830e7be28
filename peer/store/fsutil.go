package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/p2pd/p2pd/chunker"
)

// mkdirIfMissing creates dir unless it exists, reporting whether it did.
// The caller syncs the parent directory.
func mkdirIfMissing(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		fi, serr := os.Stat(dir)
		if serr != nil {
			return false, serr
		}
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	return err == nil, err
}

// readChunkFile reads the whole file at path into dst's storage (growing it
// if needed) and returns the bytes read. want is the size the index expects;
// a file of another size, or one larger than any chunk may be, is reported
// with errCorruptFile before anything is read.
func readChunkFile(path string, want int64, dst []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size > chunker.MaxChunkSizeLimit || size != want {
		return nil, fmt.Errorf("%w: %s is %d bytes, expected %d", errCorruptFile, path, size, want)
	}
	if int64(cap(dst)) < size {
		dst = make([]byte, size)
	}
	dst = dst[:size]
	if _, err := io.ReadFull(f, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s shrank while being read: %w", errCorruptFile, path, err)
		}
		return nil, err
	}
	return dst, nil
}
