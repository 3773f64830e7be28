package fleet

import (
	"fmt"
	"syscall"
)

// RaiseFDLimit raises this process's soft RLIMIT_NOFILE to its hard
// limit, for runs that hold many sockets in one process, and returns the
// soft limit in force afterwards. (Go raises it at startup too, on
// Linux; this makes sure, and says what it is.)
func RaiseFDLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("fleet: RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= lim.Max {
		return lim.Cur, nil
	}
	want := lim
	want.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return lim.Cur, fmt.Errorf("fleet: raise RLIMIT_NOFILE from %d to %d: %w", lim.Cur, lim.Max, err)
	}
	return want.Cur, nil
}

// CheckFDs raises the file descriptor limit (RaiseFDLimit) for a run that
// needs about need of them, and returns warnings to show the user: the
// raise failed, or the limit is below need.
func CheckFDs(need int, what string) []string {
	var warn []string
	limit, err := RaiseFDLimit()
	if err != nil {
		warn = append(warn, fmt.Sprintf("%v: the run may fail to open sockets", err))
	}
	if limit > 0 && uint64(need) > limit {
		warn = append(warn, fmt.Sprintf("%s needs about %d file descriptors and the limit is %d (hard limit: ulimit -Hn): "+
			"peers may fail to connect or to start; cap the peers' connections lower (scenario conns.max) or run fewer peers", what, need, limit))
	}
	return warn
}
