package consumer

import (
	"errors"
	"fmt"
	"time"
)

// BatchPolicy decides when a micro-batch is ready: when it holds MaxRecords,
// or MaxWait after its first record arrived, whichever comes first. A zero
// MaxWait flushes whatever one poll returned.
type BatchPolicy struct {
	MaxRecords int           `yaml:"max_records"`
	MaxWait    time.Duration `yaml:"max_wait"`
}

// DefaultBatchPolicy trades at most a few milliseconds of latency for
// ONNX Runtime batches large enough to amortise per-call overhead.
func DefaultBatchPolicy() BatchPolicy {
	return BatchPolicy{MaxRecords: 256, MaxWait: 5 * time.Millisecond}
}

// Validate refuses a policy that could never fire or never bound a batch.
func (p BatchPolicy) Validate() error {
	var errs []error
	if p.MaxRecords < 1 {
		errs = append(errs, fmt.Errorf("batch max records %d: must be >= 1", p.MaxRecords))
	}
	if p.MaxWait < 0 || p.MaxWait > time.Minute {
		errs = append(errs, fmt.Errorf("batch max wait %v: must be in [0, 1m]", p.MaxWait))
	}
	return errors.Join(errs...)
}

// batchClock tracks one batch being filled.
type batchClock struct {
	policy BatchPolicy
	n      int
	first  time.Time
}

// add records n more records; it reports whether the batch is full.
func (b *batchClock) add(n int, now time.Time) bool {
	if b.n == 0 && n > 0 {
		b.first = now
	}
	b.n += n
	return b.n >= b.policy.MaxRecords
}

// untilNext is how long the loop may still wait for more records; zero or
// less means flush now. An empty batch waits indefinitely (-1 is never
// returned for it; callers check n first).
func (b *batchClock) untilNext(now time.Time) time.Duration {
	if b.n == 0 {
		return b.policy.MaxWait
	}
	return b.policy.MaxWait - now.Sub(b.first)
}

func (b *batchClock) reset() { b.n = 0 }
