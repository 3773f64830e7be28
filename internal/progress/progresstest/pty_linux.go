package progresstest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openPTY opens /dev/ptmx, unlocks its terminal end and opens that too,
// neither as the process's controlling terminal. The master's descriptor
// is only used through SyscallConn, which keeps it non-blocking and in the
// runtime poller (os.File.Fd would make it blocking).
func openPTY() (master, tty *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	cerr := rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err != nil {
			err = fmt.Errorf("unlock pty: %w", err)
			return
		}
		if n, err = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN); err != nil {
			err = fmt.Errorf("get pty number: %w", err)
		}
	})
	if cerr != nil {
		return nil, nil, cerr
	}
	if err != nil {
		return nil, nil, err
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	return master, tty, nil
}
