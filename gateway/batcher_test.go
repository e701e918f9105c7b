package gateway

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/inference"
)

func startBatcher(t *testing.T, m Model, p batch.Policy, concurrency int) *batcher {
	t.Helper()
	b := newBatcher(context.Background(), m, p, concurrency, nil)
	t.Cleanup(b.stop)
	return b
}

// TestBatcherIdleRunsAtOnce: with the default policy (no wait) a request
// on an idle model is its own call, made at once: sequential requests cost
// far less than even a 1 ms wait each would.
func TestBatcherIdleRunsAtOnce(t *testing.T) {
	m := newFakeModel(t, "support", "v1")
	b := startBatcher(t, m, batch.Policy{MaxCount: DefaultBatchMaxTexts, MaxWait: DefaultBatchMaxWait}, 1)
	const n = 200
	vs := []inference.Input{m.Transform("refund my invoice")}
	start := time.Now()
	for range n {
		if p, err := b.predict(context.Background(), vs); err != nil || len(p) != 1 {
			t.Fatalf("predict: %v, %d predictions", err, len(p))
		}
	}
	if took := time.Since(start); took > n*time.Millisecond/2 {
		t.Errorf("%d sequential requests on an idle model took %v: the batcher waits", n, took)
	}
	if sizes := m.batchSizes(); len(sizes) != n || slices.Max(sizes) != 1 {
		t.Errorf("calls %v, want %d calls of 1", sizes, n)
	}
}

// TestBatcherCoalescesWhileBusy: requests that arrive while the model is
// running queue and run together when it frees, MaxCount at a time; none
// overtakes them through the idle path.
func TestBatcherCoalescesWhileBusy(t *testing.T) {
	m := newFakeModel(t, "support", "v1")
	m.gate, m.entered = make(chan struct{}), make(chan struct{}, 64)
	b := startBatcher(t, m, batch.Policy{MaxCount: 4}, 1)
	vs := []inference.Input{m.Transform("parcel courier")}
	var wg sync.WaitGroup
	call := func() {
		wg.Go(func() {
			if p, err := b.predict(context.Background(), vs); err != nil || len(p) != 1 {
				t.Errorf("predict: %v, %d predictions", err, len(p))
			}
		})
	}
	call()
	<-m.entered // the first request runs alone, blocked in the model
	const n = 10
	for range n {
		call()
	}
	for deadline := time.Now().Add(10 * time.Second); b.queued.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests queued", b.queued.Load(), n)
		}
	}
	close(m.gate)
	wg.Wait()
	if sizes := m.batchSizes(); !slices.Equal(sizes, []int{1, 4, 4, 2}) {
		t.Errorf("calls %v, want [1 4 4 2]: one alone, then the %d queued meanwhile in batches of at most 4", sizes, n)
	}
	if q := b.queued.Load(); q != 0 {
		t.Errorf("queued = %d after every request finished", q)
	}
}
