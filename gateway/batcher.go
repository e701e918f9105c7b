package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/inference"
)

// batcher coalesces concurrent /v1/predict requests for one model into
// single PredictInputs calls: requests featurise their texts in their own
// goroutine, then hand the vectors here. Batching never makes an idle model
// wait: a request that finds a run slot free and nothing queued runs at
// once, in its own goroutine. Requests that arrive while every slot is busy
// queue; the loop gathers them (up to MaxCount vectors) and runs them as
// one batch as soon as a slot frees, handing each request its slice of the
// results. So batches form exactly when waiting is unavoidable, and grow
// with load. MaxWait > 0 adds an optional wait for a batch to fill even
// while a slot is free (it also turns off the direct path), trading idle
// latency for larger batches.
type batcher struct {
	model  Model
	in     chan *batchReq
	policy batch.Policy  // MaxCount and MaxWait; vectors carry no token count
	sem    chan struct{} // bounds concurrent PredictInputs runs
	// queued counts requests handed to the loop and not yet started: the
	// direct path only takes a slot when none wait, so it never overtakes
	// a queued batch.
	queued   atomic.Int64
	observe  func(n int)
	ctx      context.Context
	running  sync.WaitGroup
	done     chan struct{}
	stopOnce sync.Once
}

type batchReq struct {
	vs  []inference.Input
	out chan batchResult // buffered: the loop never blocks on a caller that gave up
}

type batchResult struct {
	preds []inference.Prediction
	err   error
}

func newBatcher(ctx context.Context, m Model, p batch.Policy, concurrency int, observe func(int)) *batcher {
	b := &batcher{model: m, in: make(chan *batchReq, 4*max(p.MaxCount, 1)), policy: p,
		sem: make(chan struct{}, max(concurrency, 1)), observe: observe, ctx: ctx, done: make(chan struct{})}
	go b.loop()
	return b
}

// predict runs vs at once when the model is idle, else queues it for the
// next batch, and waits for its predictions.
func (b *batcher) predict(ctx context.Context, vs []inference.Input) ([]inference.Prediction, error) {
	if b.policy.MaxWait <= 0 && b.queued.Load() == 0 {
		select {
		case b.sem <- struct{}{}:
			// Idle: skip the hand-offs to the loop and a run goroutine.
			// Like an unbatched call, it runs under the request's context.
			defer func() { <-b.sem }()
			preds, err := safePredict(ctx, b.model, vs)
			if b.observe != nil {
				b.observe(len(vs))
			}
			return preds, err
		default:
		}
	}
	req := &batchReq{vs: vs, out: make(chan batchResult, 1)}
	b.queued.Add(1)
	select {
	case b.in <- req:
	case <-ctx.Done():
		b.queued.Add(-1)
		return nil, ctx.Err()
	}
	select {
	case r := <-req.out:
		return r.preds, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stop ends the loop once queued requests have run. Callers guarantee no
// predict call is in flight (the model entry is retired and unreferenced).
func (b *batcher) stop() {
	b.stopOnce.Do(func() { close(b.in) })
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	defer b.running.Wait()
	var pending *batchReq
	size := batch.NewTracker(b.policy)
	for {
		first := pending
		pending = nil
		if first == nil {
			var ok bool
			if first, ok = <-b.in; !ok {
				return
			}
		}
		reqs := []*batchReq{first}
		size.Reset()
		size.Add(len(first.vs), 0, time.Now())
		var timer *time.Timer
		expired := b.policy.MaxWait <= 0
		if !expired {
			timer = time.NewTimer(b.policy.MaxWait)
		}
		slot := false
	collect:
		for !size.Full() {
			var r *batchReq
			var ok bool
			if !expired {
				select {
				case r, ok = <-b.in:
				case <-timer.C:
					expired = true
					continue
				}
			} else {
				// MaxWait is over: run as soon as a slot is free, taking
				// whatever queued meanwhile (queued requests first).
				select {
				case r, ok = <-b.in:
				default:
					select {
					case r, ok = <-b.in:
					case b.sem <- struct{}{}:
						slot = true
						break collect
					}
				}
			}
			if !ok {
				break collect
			}
			if !size.Fits(len(r.vs), 0) {
				pending = r // starts the next batch
				break collect
			}
			reqs = append(reqs, r)
			size.Add(len(r.vs), 0, time.Now())
		}
		if timer != nil {
			timer.Stop()
		}
		b.run(reqs, size.Len(), slot)
	}
}

// run starts one batch once a run slot is free (holding says the caller
// already took one). While it waits, requests keep queueing, so a busy
// model gets larger batches. Until it starts, its requests count as
// queued, keeping the direct path off the slot it waits for.
func (b *batcher) run(reqs []*batchReq, n int, holding bool) {
	vs := make([]inference.Input, 0, n)
	for _, r := range reqs {
		vs = append(vs, r.vs...)
	}
	if !holding {
		b.sem <- struct{}{}
	}
	b.queued.Add(-int64(len(reqs)))
	b.running.Add(1)
	go func() {
		defer func() { <-b.sem; b.running.Done() }()
		preds, err := safePredict(b.ctx, b.model, vs)
		if b.observe != nil {
			b.observe(len(vs))
		}
		off := 0
		for _, r := range reqs {
			if err != nil {
				r.out <- batchResult{err: err}
			} else {
				r.out <- batchResult{preds: preds[off : off+len(r.vs) : off+len(r.vs)]}
			}
			off += len(r.vs)
		}
	}()
}

// safePredict runs PredictInputs, turning a panic or a short result into
// an error rather than a crash or an index out of range.
func safePredict(ctx context.Context, m Model, vs []inference.Input) (preds []inference.Prediction, err error) {
	defer func() {
		if r := recover(); r != nil {
			preds, err = nil, fmt.Errorf("predict panicked: %v", r)
		}
	}()
	preds, err = m.PredictInputs(ctx, vs)
	if err == nil && len(preds) != len(vs) {
		return nil, fmt.Errorf("predict returned %d predictions for %d texts", len(preds), len(vs))
	}
	return preds, err
}
