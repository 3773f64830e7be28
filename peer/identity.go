package peer

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/libp2p/go-libp2p/core/crypto"
	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pd/p2pd/internal/fsutil"
)

// maxIdentityFile bounds the identity file read at start: a marshalled
// Ed25519 key is 68 bytes.
const maxIdentityFile = 64 << 10

// parseIdentity decodes an identity file: a marshalled libp2p private
// key of at most maxIdentityFile bytes, from which a peer ID derives.
func parseIdentity(b []byte) (crypto.PrivKey, error) {
	if len(b) > maxIdentityFile {
		return nil, fmt.Errorf("%w: over %d bytes", ErrIdentity, maxIdentityFile)
	}
	key, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if _, err := lpeer.IDFromPrivateKey(key); err != nil {
		return nil, fmt.Errorf("%w: no peer ID: %w", ErrIdentity, err)
	}
	return key, nil
}

// loadIdentity reads the libp2p private key in path, or creates an Ed25519
// key and writes it there (atomically, mode 0600) if the file does not
// exist, so that the peer ID survives restarts.
func loadIdentity(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	switch {
	case err == nil:
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %w", ErrIdentity, path, err)
		}
		key, err := parseIdentity(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: open %s: %w", ErrIdentity, path, err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generate key: %w", ErrIdentity, err)
	}
	b, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: marshal key: %w", ErrIdentity, err)
	}
	if err := fsutil.WriteFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return nil, fmt.Errorf("%w: write %s: %w", ErrIdentity, path, err)
	}
	return key, nil
}
