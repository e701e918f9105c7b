package gateway

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/inference"
)

// Model is what the gateway serves; *inference.Model implements it. A
// Model that also implements io.Closer is closed once no name serves it,
// if the gateway owns it (see Config.Models and Config.OwnModels).
type Model interface {
	PredictInputs(ctx context.Context, vs []inference.Input) ([]inference.Prediction, error)
	// Transform prepares one text (n-gram features and/or encoder tokens);
	// it runs in the request's goroutine, off the ONNX Runtime thread.
	Transform(text string) inference.Input
	Manifest() bundle.Manifest
	Ref() inference.ModelRef
}

var _ Model = (*inference.Model)(nil)

// entry is one model in the serving set. Requests hold a reference while
// they use it; a replaced entry is retired and, once the last reference is
// released, its batcher stops and (if owned) its model is closed.
type entry struct {
	name    string
	model   Model
	batcher *batcher // nil when dynamic batching is off
	log     *slog.Logger
	onStop  func() // after the batcher stops: releases the model

	mu      sync.Mutex
	refs    int
	retired bool
	stopped chan struct{} // closed once the model is released
}

func (e *entry) tryAcquire() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.retired {
		return false
	}
	e.refs++
	return true
}

func (e *entry) release() {
	e.mu.Lock()
	e.refs--
	last := e.retired && e.refs == 0
	e.mu.Unlock()
	if last {
		e.shutdown()
	}
}

func (e *entry) retire() {
	e.mu.Lock()
	if e.retired {
		e.mu.Unlock()
		return
	}
	e.retired = true
	last := e.refs == 0
	e.mu.Unlock()
	if last {
		e.shutdown()
	}
}

// shutdown runs exactly once, when the entry is retired and unreferenced:
// no request can submit to the batcher any more.
func (e *entry) shutdown() {
	if e.batcher != nil {
		e.batcher.stop()
	}
	if e.onStop != nil {
		e.onStop()
	}
	e.log.Info("model retired", "model", e.name, "version", e.model.Ref().Version)
	close(e.stopped)
}

// owners counts the serving-set entries of each gateway-owned model (one
// bundle may serve under several names) and closes a model when its count
// drops to zero.
type owners struct {
	mu    sync.Mutex
	count map[Model]int
	log   *slog.Logger
}

func (o *owners) hold(m Model) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.count[m]++
}

func (o *owners) release(m Model) {
	o.mu.Lock()
	o.count[m]--
	last := o.count[m] == 0
	if last {
		delete(o.count, m)
	}
	o.mu.Unlock()
	if c, ok := m.(io.Closer); ok && last {
		if err := c.Close(); err != nil {
			o.log.Warn("close retired model", "model", m.Ref().Name, "version", m.Ref().Version, "err", err)
		}
	}
}

// servingSet is the serving set: an immutable map swapped atomically.
type servingSet struct {
	mu  sync.Mutex // serialises writers
	set atomic.Pointer[map[string]*entry]
}

func newServingSet() *servingSet {
	r := &servingSet{}
	r.set.Store(&map[string]*entry{})
	return r
}

// acquire returns the named model with a reference held, or nil.
func (r *servingSet) acquire(name string) *entry {
	for {
		e := (*r.set.Load())[name]
		if e == nil {
			return nil
		}
		if e.tryAcquire() {
			return e
		}
		// Retired between the load and the acquire: the set already holds
		// its replacement (or no longer the name), so look again.
	}
}

// only returns the single loaded model's name, or "" when there are 0 or many.
func (r *servingSet) only() string {
	m := *r.set.Load()
	if len(m) != 1 {
		return ""
	}
	for name := range m {
		return name
	}
	return ""
}

func (r *servingSet) names() []string {
	return slices.Sorted(maps.Keys(*r.set.Load()))
}

func (r *servingSet) len() int { return len(*r.set.Load()) }

// put installs e under e.name and retires whatever it replaces.
func (r *servingSet) put(e *entry) {
	r.mu.Lock()
	next := maps.Clone(*r.set.Load())
	old := next[e.name]
	next[e.name] = e
	r.set.Store(&next)
	r.mu.Unlock()
	if old != nil {
		old.retire()
	}
}

// clear retires every entry and returns them, so the caller can wait.
func (r *servingSet) clear() []*entry {
	r.mu.Lock()
	old := *r.set.Load()
	r.set.Store(&map[string]*entry{})
	r.mu.Unlock()
	out := slices.Collect(maps.Values(old))
	for _, e := range out {
		e.retire()
	}
	return out
}
