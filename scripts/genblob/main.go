// Command genblob writes a deterministic pseudo-random blob of SIZE bytes
// (chunkertest.NewStream: the same bytes for the same seed on every
// machine) to standard output, at about memory speed, so that scripts can
// push large blobs without storing them first:
//
//	go run ./scripts/genblob 4GiB | bin/p2pctl push -
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/units"
)

func main() {
	seed := flag.Uint64("seed", 1, "generator seed")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: genblob [--seed N] SIZE   (SIZE such as 4GiB)")
		flag.PrintDefaults()
	}
	flag.Parse()
	size, err := units.ParseSize(flag.Arg(0))
	if flag.NArg() != 1 || err != nil || size < 0 {
		flag.Usage()
		os.Exit(2)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if _, err := io.Copy(w, chunkertest.NewStream(*seed, size)); err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genblob:", err)
		os.Exit(1)
	}
}
