package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/inference"
)

// batcher coalesces concurrent /v1/predict requests for one model into
// single PredictInputs calls: requests featurise their texts in their own
// goroutine, then queue the vectors here; the loop takes the first request,
// keeps collecting until the policy's MaxCount vectors or MaxWait has
// passed, and runs them as one batch, handing each request its slice of the
// results. When MaxWait is over but every run slot is busy, the batch keeps
// growing until a slot frees (waiting is unavoidable then, so it might as
// well batch). MaxWait 0 runs as soon as a slot is free: no added latency
// at low load, batches form only while the model is busy.
type batcher struct {
	model    Model
	in       chan *batchReq
	policy   batch.Policy  // MaxCount and MaxWait; vectors carry no token count
	sem      chan struct{} // bounds concurrent PredictInputs runs
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

// predict queues vs and waits for its predictions.
func (b *batcher) predict(ctx context.Context, vs []inference.Input) ([]inference.Prediction, error) {
	req := &batchReq{vs: vs, out: make(chan batchResult, 1)}
	select {
	case b.in <- req:
	case <-ctx.Done():
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
// model gets larger batches.
func (b *batcher) run(reqs []*batchReq, n int, holding bool) {
	vs := make([]inference.Input, 0, n)
	for _, r := range reqs {
		vs = append(vs, r.vs...)
	}
	if !holding {
		b.sem <- struct{}{}
	}
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
