package fleet

import (
	"os"
)

// DefaultDir is /dev/shm when it exists: the emulated links, not the
// host's disk, should set the pace. Otherwise the system temp directory.
func DefaultDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// TempDir makes a run's own directory, named as os.MkdirTemp names it
// from pattern, in dir or, if dir is "", in DefaultDir(). The caller
// removes it when the run ends.
func TempDir(dir, pattern string) (string, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	return os.MkdirTemp(dir, pattern)
}
