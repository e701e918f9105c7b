package serving_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/serving"
)

const instance = "test-instance"

var (
	errCorrupt = errors.New("corrupt onnx graph")
	errWarm    = errors.New("inference failed")
)

// writeBundle writes a tiny valid bundle to dir; tag makes its content (and
// so its registry hash and version) distinct. The ONNX bytes are opaque to
// bundle.Load and never reach ONNX Runtime: Open is faked.
func writeBundle(t testing.TB, dir, tag string) string {
	t.Helper()
	vocab, err := featurizer.NewVocab([]uint32{3, 17, 256}, []float32{1.5, 2.25, 1})
	if err != nil {
		t.Fatal(err)
	}
	m := &bundle.Manifest{
		Name: "scratch", Version: "dev", CreatedAt: time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC),
		Labels:     []string{"account", "billing", "shipping"},
		Featurizer: featurizer.DefaultConfig(),
		Graph: bundle.Graph{Kind: bundle.KindLinear, Opset: 17, NumFeatures: vocab.Size(), NumClasses: 3,
			InputIDs: "ids", InputWeight: "weights", Output: "probs"},
	}
	if err := bundle.Write(dir, m, vocab, []byte("\x08\x07fake-onnx-"+tag)); err != nil {
		t.Fatalf("bundle.Write: %v", err)
	}
	return dir
}

// register adds n distinct bundles to store as model name, v1..vn.
func register(t *testing.T, store registry.Store, name string, n int) {
	t.Helper()
	src := t.TempDir()
	for i := 1; i <= n; i++ {
		tag := name + strconv.Itoa(i)
		v, err := store.Register(context.Background(), name, writeBundle(t, filepath.Join(src, tag), tag), registry.Lineage{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if want := "v" + strconv.Itoa(i); v.Version != want {
			t.Fatalf("registered %s %s, want %s", name, v.Version, want)
		}
	}
}

// fakeModel answers every text with its own version, and refuses to
// predict once closed, so a use after close shows as an error.
type fakeModel struct {
	ref         inference.ModelRef
	failPredict bool
	closes      atomic.Int32
}

func (m *fakeModel) Ref() inference.ModelRef { return m.ref }

func (m *fakeModel) Predict(_ context.Context, texts []string) ([]inference.Prediction, error) {
	if m.closes.Load() > 0 {
		return nil, fmt.Errorf("%s %s: predict after close", m.ref.Name, m.ref.Version)
	}
	if m.failPredict {
		return nil, errWarm
	}
	out := make([]inference.Prediction, len(texts))
	for i := range out {
		out[i] = inference.Prediction{Label: m.ref.Version, Confidence: 1, Model: m.ref}
	}
	return out, nil
}

func (m *fakeModel) Close() error { m.closes.Add(1); return nil }

// opener is a fake serving.Config.Open; versions are keyed "name/vN".
type opener struct {
	mu          sync.Mutex
	opens       map[string]int
	models      map[string][]*fakeModel
	failOpen    map[string]bool
	failPredict map[string]bool
}

func newOpener() *opener {
	return &opener{opens: map[string]int{}, models: map[string][]*fakeModel{},
		failOpen: map[string]bool{}, failPredict: map[string]bool{}}
}

func (o *opener) Open(dir string) (serving.Model, error) {
	b, err := bundle.Load(dir)
	if err != nil {
		return nil, err
	}
	key := b.Manifest.Name + "/" + b.Manifest.Version
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opens[key]++
	if o.failOpen[key] {
		return nil, fmt.Errorf("open %s: %w", dir, errCorrupt)
	}
	m := &fakeModel{ref: inference.ModelRef{Name: b.Manifest.Name, Version: b.Manifest.Version}, failPredict: o.failPredict[key]}
	o.models[key] = append(o.models[key], m)
	return m, nil
}

func (o *opener) openCount(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opens[key]
}

// model returns the one model opened for key.
func (o *opener) model(t *testing.T, key string) *fakeModel {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.models[key]) != 1 {
		t.Fatalf("%s opened %d times, want once", key, len(o.models[key]))
	}
	return o.models[key][0]
}

func (o *opener) all() []*fakeModel {
	o.mu.Lock()
	defer o.mu.Unlock()
	var all []*fakeModel
	for _, ms := range o.models {
		all = append(all, ms...)
	}
	return all
}

type env struct {
	store *registry.Local
	open  *opener
	set   *serving.Set
	reg   *prometheus.Registry
}

// newEnv registers model "support" v1..vn with v1 champion, and a set over
// it (not started).
func newEnv(t *testing.T, n int) *env {
	t.Helper()
	store, err := registry.OpenLocal(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	register(t, store, "support", n)
	if _, err := store.Promote(context.Background(), "support", "v1", "test", "first"); err != nil {
		t.Fatal(err)
	}
	e := &env{store: store, open: newOpener()}
	e.set, e.reg = newSet(t, store, e.open)
	return e
}

func newSet(t *testing.T, store registry.Store, o *opener) (*serving.Set, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	set, err := serving.New(serving.Config{Store: store, Open: o.Open, Instance: instance, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = set.Close(ctx)
	})
	return set, reg
}

func (e *env) start(t *testing.T) {
	t.Helper()
	if err := e.set.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func (e *env) promote(t *testing.T, version string) {
	t.Helper()
	if _, err := e.store.Promote(context.Background(), "support", version, "test", "promote "+version); err != nil {
		t.Fatal(err)
	}
}

func (e *env) sync(t *testing.T) {
	t.Helper()
	if err := e.set.Sync(context.Background(), "support"); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// predicted is the version p answers with.
func predicted(t *testing.T, p inference.Predictor) string {
	t.Helper()
	preds, err := p.Predict(context.Background(), []string{"where is my parcel"})
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	if len(preds) != 1 {
		t.Fatalf("%d predictions for one text", len(preds))
	}
	return preds[0].Model.Version
}

func acquire(t *testing.T, set *serving.Set, name string) *serving.Loaded {
	t.Helper()
	l, err := set.Acquire(name)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", name, err)
	}
	return l
}

func checkCloses(t *testing.T, m *fakeModel, want int32) {
	t.Helper()
	if got := m.closes.Load(); got != want {
		t.Errorf("%s %s closed %d times, want %d", m.ref.Name, m.ref.Version, got, want)
	}
}

func loadReport(t *testing.T, store registry.Store, version string) registry.LoadReport {
	t.Helper()
	v, err := store.Get(context.Background(), "support", version)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range v.Loads {
		if r.Instance == instance {
			return r
		}
	}
	t.Fatalf("support %s has no load report from %s: %+v", version, instance, v.Loads)
	return registry.LoadReport{}
}

func TestStartServesChampions(t *testing.T) {
	e := newEnv(t, 2)
	register(t, e.store, "other", 1) // versions, no champion
	e.start(t)

	if got := e.set.Names(); len(got) != 1 || got[0] != "support" {
		t.Errorf("Names = %v, want [support]", got)
	}
	if got := e.set.Version("support"); got != "v1" {
		t.Errorf("Version(support) = %q, want v1", got)
	}
	if got := e.set.Version("other"); got != "" {
		t.Errorf("Version(other) = %q, want none", got)
	}
	if _, err := e.set.Acquire("other"); !errors.Is(err, serving.ErrNotServing) {
		t.Errorf("Acquire(other) = %v, want ErrNotServing", err)
	}
	if _, err := e.set.Acquire("missing"); !errors.Is(err, serving.ErrNotServing) {
		t.Errorf("Acquire(missing) = %v, want ErrNotServing", err)
	}
	l := acquire(t, e.set, "support")
	if l.Name != "support" || l.Version != "v1" || l.Hash == "" {
		t.Errorf("leased %s %s hash %q", l.Name, l.Version, l.Hash)
	}
	if got := predicted(t, l.Model); got != "v1" {
		t.Errorf("leased model answers %s", got)
	}
	l.Release()
	if n := e.open.openCount("support/v2") + e.open.openCount("other/v1"); n != 0 {
		t.Errorf("%d opens of versions that are not champion", n)
	}
	if r := loadReport(t, e.store, "v1"); !r.OK || r.Error != "" {
		t.Errorf("load report %+v, want OK", r)
	}
}

func TestSwapKeepsLeaseUntilRelease(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t)
	old := acquire(t, e.set, "support")
	v1 := e.open.model(t, "support/v1")

	e.promote(t, "v2")
	e.sync(t)
	if got := e.set.Version("support"); got != "v2" {
		t.Fatalf("Version after promote = %q, want v2", got)
	}
	if got := predicted(t, old.Model); got != "v1" {
		t.Errorf("lease taken before the swap answers %s, want v1", got)
	}
	checkCloses(t, v1, 0)

	fresh := acquire(t, e.set, "support")
	if fresh.Version != "v2" || predicted(t, fresh.Model) != "v2" {
		t.Errorf("fresh lease on %s, want v2", fresh.Version)
	}
	fresh.Release()
	checkCloses(t, v1, 0)

	old.Release()
	checkCloses(t, v1, 1)
	checkCloses(t, e.open.model(t, "support/v2"), 0)
	if r := loadReport(t, e.store, "v2"); !r.OK {
		t.Errorf("v2 load report %+v, want OK", r)
	}
}

func TestWatch(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t)
	var mu sync.Mutex
	var got []*serving.Loaded
	watched := func() []*serving.Loaded {
		mu.Lock()
		defer mu.Unlock()
		return append([]*serving.Loaded(nil), got...)
	}
	e.set.Watch(func(l *serving.Loaded) {
		mu.Lock()
		got = append(got, l)
		mu.Unlock()
	})
	if w := watched(); len(w) != 1 || w[0].Version != "v1" {
		t.Fatalf("Watch called with %d versions at once, want v1", len(w))
	}

	e.promote(t, "v2")
	e.sync(t)
	w := watched()
	if len(w) != 2 || w[1].Version != "v2" {
		t.Fatalf("after the swap the watcher got %d calls, want a second with v2", len(w))
	}
	v1 := e.open.model(t, "support/v1")
	checkCloses(t, v1, 0) // the watcher still holds v1
	if got := predicted(t, w[0].Model); got != "v1" {
		t.Errorf("watcher's v1 answers %s", got)
	}
	w[0].Release()
	checkCloses(t, v1, 1)

	// The watcher's lease on v2 is its own: another user releasing its
	// lease does not close v2 on Close.
	l := acquire(t, e.set, "support")
	l.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.set.Close(ctx); err == nil {
		t.Error("Close returned nil while the watcher held v2")
	}
	v2 := e.open.model(t, "support/v2")
	checkCloses(t, v2, 0)
	w[1].Release()
	checkCloses(t, v2, 1)
}

func TestWatchAfterSwapGetsCurrentOnly(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t)
	e.promote(t, "v2")
	e.sync(t)
	var calls []string
	e.set.Watch(func(l *serving.Loaded) {
		calls = append(calls, l.Version)
		l.Release()
	})
	if strings.Join(calls, ",") != "v2" {
		t.Errorf("late watcher called with %v, want [v2]", calls)
	}
}

func TestFailedLoadIsNotSwappedIn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fail    func(o *opener)
		want    error
		v2Close int32 // closes of the v2 model that Open returned (-1: Open returned none)
	}{
		{"open", func(o *opener) { o.failOpen["support/v2"] = true }, errCorrupt, -1},
		{"warm-up", func(o *opener) { o.failPredict["support/v2"] = true }, errWarm, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 3)
			tc.fail(e.open)
			e.start(t)
			e.promote(t, "v2")

			err := e.set.Sync(context.Background(), "support")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "v2") {
				t.Fatalf("Sync = %v, want an error naming v2 and wrapping %v", err, tc.want)
			}
			if got := e.set.Version("support"); got != "v1" {
				t.Fatalf("serving %q after a failed load, want v1", got)
			}
			l := acquire(t, e.set, "support")
			if got := predicted(t, l.Model); got != "v1" {
				t.Errorf("serving model answers %s, want v1", got)
			}
			l.Release()
			if tc.v2Close >= 0 {
				checkCloses(t, e.open.model(t, "support/v2"), tc.v2Close)
			}
			checkFailures(t, e.reg, 1)
			checkServingInfo(t, e.reg, "v1")
			r := loadReport(t, e.store, "v2")
			if r.OK || !strings.Contains(r.Error, tc.want.Error()) || r.At.IsZero() {
				t.Errorf("v2 load report %+v, want a failure saying %q", r, tc.want)
			}

			// Not retried while the alias stays on it.
			if err := e.set.Sync(context.Background(), "support"); err != nil {
				t.Errorf("second Sync = %v", err)
			}
			e.set.SyncAll(context.Background())
			if n := e.open.openCount("support/v2"); n != 1 {
				t.Errorf("v2 opened %d times, want once", n)
			}
			checkFailures(t, e.reg, 1)

			e.promote(t, "v3")
			e.sync(t)
			if got := e.set.Version("support"); got != "v3" {
				t.Fatalf("serving %q after promoting v3, want v3", got)
			}
			checkCloses(t, e.open.model(t, "support/v1"), 1)
			checkFailures(t, e.reg, 1)
			checkServingInfo(t, e.reg, "v3")
			if got, _ := metric(t, e.reg, "triage_serving_swaps_total", map[string]string{"model": "support"}); got != 2 {
				t.Errorf("swaps %v, want 2 (v1 at start, v3)", got)
			}
			if r := loadReport(t, e.store, "v3"); !r.OK {
				t.Errorf("v3 load report %+v, want OK", r)
			}
		})
	}
}

// metric gathers reg and returns the value of the series of family name
// with exactly these labels (ok false when there is none). testutil is not
// used: it needs a module (kylelemons/godebug) that go.mod does not list.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// checkFailures checks triage_serving_load_failures_total{model="support"}.
func checkFailures(t *testing.T, reg *prometheus.Registry, want float64) {
	t.Helper()
	if got, _ := metric(t, reg, "triage_serving_load_failures_total", map[string]string{"model": "support"}); got != want {
		t.Errorf("triage_serving_load_failures_total{model=support} = %v, want %v", got, want)
	}
}

// checkServingInfo checks triage_serving_model_info has exactly one series
// for support, at version.
func checkServingInfo(t *testing.T, reg *prometheus.Registry, version string) {
	t.Helper()
	for _, v := range []string{"v1", "v2", "v3"} {
		got, ok := metric(t, reg, "triage_serving_model_info", map[string]string{"model": "support", "version": v})
		if want := v == version; ok != want || ok && got != 1 {
			t.Errorf("triage_serving_model_info{support,%s} = %v (present %v), want present %v", v, got, ok, want)
		}
	}
}

func TestStartFailsWhenChampionFailsToLoad(t *testing.T) {
	e := newEnv(t, 1)
	e.open.failOpen["support/v1"] = true
	err := e.set.Start(context.Background())
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("Start = %v, want the load error", err)
	}
	if _, err := e.set.Acquire("support"); !errors.Is(err, serving.ErrNotServing) {
		t.Errorf("Acquire after a failed Start = %v, want ErrNotServing", err)
	}
}

func TestRoutePinAcrossSwap(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t)
	route := e.set.Route("support")
	if ref := route.Ref(); ref.Name != "support" || ref.Version != "v1" {
		t.Errorf("Ref = %+v", ref)
	}
	pinned, release, err := route.Pin()
	if err != nil {
		t.Fatal(err)
	}

	e.promote(t, "v2")
	e.sync(t)
	if got := route.Ref().Version; got != "v2" {
		t.Errorf("Ref after swap = %s, want v2", got)
	}
	if got := predicted(t, pinned); got != "v1" {
		t.Errorf("pinned predictor answers %s, want v1", got)
	}
	if got := predicted(t, route); got != "v2" {
		t.Errorf("route answers %s, want v2", got)
	}
	if got := predicted(t, pinned); got != "v1" {
		t.Errorf("pinned predictor answers %s after a route call, want v1", got)
	}
	v1 := e.open.model(t, "support/v1")
	checkCloses(t, v1, 0)
	release()
	checkCloses(t, v1, 1)

	if _, _, err := e.set.Route("missing").Pin(); !errors.Is(err, serving.ErrNotServing) {
		t.Errorf("Pin of an unserved name = %v, want ErrNotServing", err)
	}
	if _, err := e.set.Route("missing").Predict(context.Background(), []string{"x"}); !errors.Is(err, serving.ErrNotServing) {
		t.Errorf("Predict of an unserved name = %v, want ErrNotServing", err)
	}
}

func TestCloseWaitsForLeases(t *testing.T) {
	e := newEnv(t, 1)
	e.start(t)
	l := acquire(t, e.set, "support")
	v1 := e.open.model(t, "support/v1")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := e.set.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "support v1") {
		t.Fatalf("Close with a lease held = %v, want a deadline error naming support v1", err)
	}
	checkCloses(t, v1, 0)
	if _, err := e.set.Acquire("support"); !errors.Is(err, serving.ErrNotServing) {
		t.Errorf("Acquire after Close = %v, want ErrNotServing", err)
	}
	if got := predicted(t, l.Model); got != "v1" {
		t.Errorf("held lease answers %s after Close", got)
	}
	l.Release()
	checkCloses(t, v1, 1)

	// A Close without a deadline returns once the last lease is released.
	set, _ := newSet(t, e.store, e.open)
	if err := set.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	l = acquire(t, set, "support")
	closed := make(chan error, 1)
	go func() { closed <- set.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v with a lease held", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.Release()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close after release = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the lease was released")
	}
	for _, m := range e.open.all() {
		checkCloses(t, m, 1)
	}
}

func TestSyncFollowsRegistryNotEvents(t *testing.T) {
	e := newEnv(t, 3)
	e.start(t)
	e.promote(t, "v2")
	e.promote(t, "v3")
	// The event for v2 arrives after both moves, then replays.
	e.sync(t)
	e.sync(t)
	if got := e.set.Version("support"); got != "v3" {
		t.Fatalf("Version = %q, want v3", got)
	}
	if n := e.open.openCount("support/v2"); n != 0 {
		t.Errorf("v2 opened %d times though it was champion only between two reads", n)
	}
	if n := e.open.openCount("support/v3"); n != 1 {
		t.Errorf("v3 opened %d times, want once", n)
	}
	// A rollback moves the alias back, and the registry says so.
	if _, err := e.store.Rollback(context.Background(), "support", "test", "v3 is worse"); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	if got := e.set.Version("support"); got != "v2" {
		t.Errorf("Version after rollback = %q, want v2", got)
	}
}

// TestConcurrentUseAcrossSwaps runs users against the set while versions
// swap: no prediction may reach a closed model, and every model retired is
// closed exactly once.
func TestConcurrentUseAcrossSwaps(t *testing.T) {
	e := newEnv(t, 3)
	e.start(t)
	var watchers sync.WaitGroup
	e.set.Watch(func(l *serving.Loaded) {
		watchers.Go(func() { // a watcher that keeps its version a little while
			defer l.Release()
			if _, err := l.Model.Predict(context.Background(), []string{"w"}); err != nil {
				t.Errorf("watcher's Predict: %v", err)
			}
		})
	})
	stop := make(chan struct{})
	var users sync.WaitGroup
	var calls atomic.Int64
	for range 4 {
		users.Go(func() {
			route := e.set.Route("support")
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := route.Predict(context.Background(), []string{"a", "b"}); err != nil {
					t.Errorf("Predict during swaps: %v", err)
					return
				}
				calls.Add(1)
			}
		})
	}
	for _, v := range []string{"v2", "v3", "v1", "v3"} {
		e.promote(t, v)
		e.sync(t)
	}
	close(stop)
	users.Wait()
	watchers.Wait()
	if calls.Load() == 0 {
		t.Fatal("no predictions ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.set.Close(ctx); err != nil {
		t.Fatal(err)
	}
	all := e.open.all()
	if len(all) != 5 {
		t.Errorf("%d models opened, want 5 (v1 v2 v3 v1 v3)", len(all))
	}
	for _, m := range all {
		checkCloses(t, m, 1)
	}
}

// A version that failed to load is tried again when the alias leaves it
// (here: a rollback to what serves) and is later promoted again.
func TestFailedVersionRetriedAfterRollbackAndRepromotion(t *testing.T) {
	e := newEnv(t, 2)
	e.open.failOpen["support/v2"] = true
	e.start(t)
	e.promote(t, "v2")
	if err := e.set.Sync(context.Background(), "support"); err == nil {
		t.Fatal("corrupt v2 loaded")
	}
	if _, err := e.store.Rollback(context.Background(), "support", "test", "v2 is broken"); err != nil {
		t.Fatal(err)
	}
	e.sync(t) // back on v1, which serves
	e.open.mu.Lock()
	e.open.failOpen["support/v2"] = false // fixed, e.g. the volume was remounted
	e.open.mu.Unlock()
	e.promote(t, "v2")
	e.sync(t)
	if got := e.set.Version("support"); got != "v2" {
		t.Fatalf("serving %q after re-promoting a fixed v2, want v2", got)
	}
	if n := e.open.openCount("support/v2"); n != 2 {
		t.Errorf("v2 opened %d times, want 2", n)
	}
}
