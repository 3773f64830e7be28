//go:build !unix

package sched

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
