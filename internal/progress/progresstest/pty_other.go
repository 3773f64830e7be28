//go:build !linux

package progresstest

import (
	"errors"
	"os"
)

// openPTY is implemented on Linux only; elsewhere Open skips the test.
func openPTY() (master, tty *os.File, err error) {
	return nil, nil, errors.ErrUnsupported
}
