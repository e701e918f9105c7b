package featurizer

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time of the calling OS thread: on a shared, loaded
// machine it tracks a benchmark's own work better than wall time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
