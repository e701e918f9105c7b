// Package batch is Triage's one micro-batching policy. The consumer's Kafka
// micro-batches, the gateway's coalesced /v1/predict requests and the
// encoder's ONNX Runtime chunks all decide with it when a batch is ready.
package batch

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Policy says when a micro-batch is ready: when it holds MaxCount items, or
// MaxTokens tokens (0 = no token limit), or MaxWait has passed since its
// first item. A zero MaxWait runs a batch as soon as it has an item;
// MaxCount 0 means no count limit, which needs a token limit instead.
type Policy struct {
	MaxCount  int
	MaxWait   time.Duration
	MaxTokens int
}

// Default trades at most a few milliseconds of latency for ONNX Runtime
// batches large enough to amortise per-call overhead.
func Default() Policy {
	return Policy{MaxCount: 256, MaxWait: 5 * time.Millisecond}
}

// maxWaitLimit catches a wait given in the wrong unit: no caller wants a
// batch to sit for minutes.
const maxWaitLimit = time.Minute

// Validate refuses a policy that is negative, waits implausibly long, or
// has no size trigger (MaxWait alone would let a batch grow without bound).
func (p Policy) Validate() error {
	var errs []error
	if p.MaxCount < 0 {
		errs = append(errs, fmt.Errorf("batch max count %d: must be >= 0 (use >= 1 to bound items per batch)", p.MaxCount))
	}
	if p.MaxTokens < 0 {
		errs = append(errs, fmt.Errorf("batch max tokens %d: must be >= 0 (0 = no token limit)", p.MaxTokens))
	}
	if p.MaxWait < 0 || p.MaxWait > maxWaitLimit {
		errs = append(errs, fmt.Errorf("batch max wait %v: must be in [0, %v] (0 = no wait)", p.MaxWait, maxWaitLimit))
	}
	if p.MaxCount == 0 && p.MaxTokens == 0 {
		errs = append(errs, errors.New("batch policy has no size trigger: set max count (or max tokens) >= 1"))
	}
	return errors.Join(errs...)
}

// Fits reports whether a batch of count items and tokens tokens is within
// the policy's size limits.
func (p Policy) Fits(count, tokens int) bool {
	return (p.MaxCount == 0 || count <= p.MaxCount) && (p.MaxTokens == 0 || tokens <= p.MaxTokens)
}

// full reports whether a batch of count items and tokens tokens is ready
// by size.
func (p Policy) full(count, tokens int) bool {
	return (p.MaxCount > 0 && count >= p.MaxCount) || (p.MaxTokens > 0 && tokens >= p.MaxTokens)
}

// RegisterFlags binds --PREFIXbatch-max, --PREFIXbatch-wait and
// --PREFIXbatch-max-tokens to p's fields, with p's current values as the
// defaults.
func (p *Policy) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.IntVar(&p.MaxCount, prefix+"batch-max", p.MaxCount, "most items per micro-batch")
	fs.DurationVar(&p.MaxWait, prefix+"batch-wait", p.MaxWait, "longest wait to fill a micro-batch after its first item (0 = no wait)")
	fs.IntVar(&p.MaxTokens, prefix+"batch-max-tokens", p.MaxTokens, "most tokens per micro-batch (0 = no token limit)")
}

// Tracker follows one batch being filled under a Policy.
type Tracker struct {
	policy Policy
	n      int
	tokens int
	first  time.Time
}

// NewTracker starts an empty batch under p.
func NewTracker(p Policy) *Tracker { return &Tracker{policy: p} }

// Add counts items more items holding tokens tokens, arriving at now; it
// reports whether the batch is now full by size. The wait clock starts with
// the first item.
func (t *Tracker) Add(items, tokens int, now time.Time) (full bool) {
	if t.n == 0 && items > 0 {
		t.first = now
	}
	t.n += items
	t.tokens += tokens
	return t.Full()
}

// Full reports whether the batch has reached MaxCount or MaxTokens.
func (t *Tracker) Full() bool { return t.policy.full(t.n, t.tokens) }

// Fits reports whether items more items with tokens tokens would keep the
// batch within the policy's size limits.
func (t *Tracker) Fits(items, tokens int) bool {
	return t.policy.Fits(t.n+items, t.tokens+tokens)
}

// UntilNext is how long the batch may still wait for more items; zero or
// less means it is due now. An empty batch has not started its clock, so
// it reports the whole MaxWait (a caller with nothing in hand usually
// waits for a first item without a deadline).
func (t *Tracker) UntilNext(now time.Time) time.Duration {
	if t.n == 0 {
		return t.policy.MaxWait
	}
	return t.policy.MaxWait - now.Sub(t.first)
}

// Reset empties the batch for the next one.
func (t *Tracker) Reset() { t.n, t.tokens, t.first = 0, 0, time.Time{} }

// Len is the number of items in the batch.
func (t *Tracker) Len() int { return t.n }

// Tokens is the number of tokens in the batch.
func (t *Tracker) Tokens() int { return t.tokens }
