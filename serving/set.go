// Package serving is one process's serving set: for each model name, the
// registry version its champion alias points at, loaded once and shared by
// every role in the process (the Kafka consumer and the REST gateway). It
// follows the registry: an alias move (an event on the model-updates topic,
// or a periodic re-read of the registry) loads and warms the new version off
// the hot path, then swaps it in atomically. Users hold a lease on the
// version they run, so the old version is closed only when its last request
// or transaction has finished, and a version that fails to load is never
// swapped in.
package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/registry"
)

// ErrNotServing is returned for a name the set has no version of.
var ErrNotServing = errors.New("model not served")

// Model is what the set loads; *inference.Model is one. Warm-up and
// prediction go through it.
type Model interface {
	Predict(ctx context.Context, texts []string) ([]inference.Prediction, error)
	Ref() inference.ModelRef
	Close() error
}

// Config configures a Set.
type Config struct {
	Store registry.Store
	// Open loads a version's bundle directory.
	Open func(dir string) (Model, error)
	// Names limits the set to these models; empty serves every model the
	// registry has a champion for.
	Names []string
	// Instance names this process in load reports (`triage models show`);
	// default host-pid.
	Instance string
	// WarmTexts are classified once after loading, before the swap, so the
	// first real batch does not pay for lazy initialisation.
	WarmTexts []string
	Logger    *slog.Logger
	// Registerer receives triage_serving_* metrics; nil: a private registry.
	Registerer prometheus.Registerer
}

// Loaded is one loaded version. Hold it with Acquire, give it back with
// Release.
type Loaded struct {
	Name, Version, Hash string
	Model               Model

	mu      sync.Mutex
	refs    int
	retired bool
	closed  chan struct{}
	log     *slog.Logger
}

// Release gives back a lease; the last one on a retired version closes it.
func (l *Loaded) Release() {
	l.mu.Lock()
	l.refs--
	last := l.retired && l.refs == 0
	l.mu.Unlock()
	if last {
		l.close()
	}
}

func (l *Loaded) tryAcquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retired {
		return false
	}
	l.refs++
	return true
}

func (l *Loaded) retire() {
	l.mu.Lock()
	if l.retired {
		l.mu.Unlock()
		return
	}
	l.retired = true
	last := l.refs == 0
	l.mu.Unlock()
	if last {
		l.close()
	}
}

func (l *Loaded) close() {
	if err := l.Model.Close(); err != nil {
		l.log.Warn("close retired model", "model", l.Name, "version", l.Version, "err", err)
	}
	l.log.Info("model version released", "model", l.Name, "version", l.Version)
	close(l.closed)
}

// Set is the serving set.
type Set struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu        sync.RWMutex
	current   map[string]*Loaded
	watches   map[int]func(*Loaded)
	nextWatch int

	syncMu sync.Mutex        // one load at a time: loads compete with serving for CPU
	failed map[string]string // name -> version that failed to load (not retried until it changes)
	closed bool              // under syncMu
}

// New returns an empty set; Start loads what the aliases say now.
func New(cfg Config) (*Set, error) {
	if cfg.Store == nil || cfg.Open == nil {
		return nil, errors.New("serving: a registry store and an Open function are required")
	}
	if cfg.Instance == "" {
		host, _ := os.Hostname()
		cfg.Instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if len(cfg.WarmTexts) == 0 {
		cfg.WarmTexts = []string{"warm up the model before it serves"}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("serving metrics: %w", err)
	}
	return &Set{cfg: cfg, log: cfg.Logger.With("component", "serving"), metrics: m,
		current: map[string]*Loaded{}, watches: map[int]func(*Loaded){}, failed: map[string]string{}}, nil
}

// Acquire returns the version serving name with a lease held.
func (s *Set) Acquire(name string) (*Loaded, error) {
	for {
		s.mu.RLock()
		l := s.current[name]
		s.mu.RUnlock()
		if l == nil {
			return nil, fmt.Errorf("%w: %q has no champion version loaded", ErrNotServing, name)
		}
		if l.tryAcquire() {
			return l, nil
		}
		// Retired between the read and the lease: the map already holds
		// its replacement.
	}
}

// Names lists the models being served.
func (s *Set) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.current))
}

// Version reports the version serving name ("" when none).
func (s *Set) Version(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if l := s.current[name]; l != nil {
		return l.Version
	}
	return ""
}

// Watch calls fn with every version that starts serving, now (for those
// already loaded) and on each later swap, until the returned unwatch is
// called. fn gets its own lease, which it must Release once it stops using
// that version.
func (s *Set) Watch(fn func(*Loaded)) (unwatch func()) {
	// No swap may run between the current versions' calls and the
	// watcher's registration, or fn could see a new version before an old.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	id := s.nextWatch
	s.nextWatch++
	s.watches[id] = fn
	cur := slices.Collect(maps.Values(s.current))
	for _, l := range cur {
		l.tryAcquire()
	}
	s.mu.Unlock()
	for _, l := range cur {
		fn(l)
	}
	return func() {
		s.mu.Lock()
		delete(s.watches, id)
		s.mu.Unlock()
	}
}

// Start loads the champion of every served model. A model without a
// champion is skipped (it starts serving when one is promoted); a champion
// that fails to load fails Start, since the process would serve nothing
// for that model.
func (s *Set) Start(ctx context.Context) error {
	names, err := s.names(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if err := s.Sync(ctx, name); err != nil && !errors.Is(err, registry.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Set) names(ctx context.Context) ([]string, error) {
	if len(s.cfg.Names) > 0 {
		return s.cfg.Names, nil
	}
	names, err := s.cfg.Store.Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("serving: list models: %w", err)
	}
	return names, nil
}

func (s *Set) serves(name string) bool {
	return len(s.cfg.Names) == 0 || slices.Contains(s.cfg.Names, name)
}

// SyncAll brings every served model to its champion (the periodic
// reconcile that covers a missed event).
func (s *Set) SyncAll(ctx context.Context) {
	names, err := s.names(ctx)
	if err != nil {
		s.log.Warn("reconcile with the registry", "err", err)
		return
	}
	for _, name := range names {
		if err := s.Sync(ctx, name); err != nil && !errors.Is(err, registry.ErrNotFound) {
			s.log.Warn("reconcile with the registry", "model", name, "err", err)
		}
	}
}

// Sync makes name serve what its champion alias points at now. The registry
// is the truth; an event only says when to look, so replayed or reordered
// events never bring an old version back. A version that fails to load is
// not swapped in: the old one keeps serving, the failure is logged, counted
// and reported to the registry, and it is not retried until the alias moves
// elsewhere.
func (s *Set) Sync(ctx context.Context, name string) error {
	if !s.serves(name) {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.closed {
		return nil
	}
	v, err := s.cfg.Store.Resolve(ctx, name, registry.Champion)
	if err != nil {
		return fmt.Errorf("serving: resolve %s champion: %w", name, err)
	}
	if cur := s.Version(name); cur == v.Version {
		// The alias is back on what serves: a version that failed before
		// gets another try when promoted again.
		delete(s.failed, name)
		return nil
	}
	if s.failed[name] == v.Version {
		return nil
	}
	start := time.Now()
	l, err := s.load(ctx, v)
	if err != nil {
		s.failed[name] = v.Version
		s.metrics.loadFailures.WithLabelValues(name).Inc()
		s.log.Error("model version failed to load; the previous version keeps serving",
			"model", name, "version", v.Version, "serving", s.Version(name), "err", err)
		s.report(ctx, v, err)
		return fmt.Errorf("serving: load %s %s: %w", name, v.Version, err)
	}
	delete(s.failed, name)
	s.swap(l)
	s.metrics.swaps.WithLabelValues(name).Inc()
	s.metrics.loadSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
	s.report(ctx, v, nil)
	return nil
}

// load opens and warms a version; nothing serves it yet.
func (s *Set) load(ctx context.Context, v registry.Version) (*Loaded, error) {
	m, err := s.cfg.Open(v.Dir)
	if err != nil {
		return nil, err
	}
	if ref := m.Ref(); ref.Name != v.Model || ref.Version != v.Version {
		m.Close()
		return nil, fmt.Errorf("bundle in %s names itself %s %s, not %s %s", v.Dir, ref.Name, ref.Version, v.Model, v.Version)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	preds, err := m.Predict(wctx, s.cfg.WarmTexts)
	if err == nil && len(preds) != len(s.cfg.WarmTexts) {
		err = fmt.Errorf("warm-up returned %d predictions for %d texts", len(preds), len(s.cfg.WarmTexts))
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("warm up: %w", err)
	}
	return &Loaded{Name: v.Model, Version: v.Version, Hash: v.Hash, Model: m,
		closed: make(chan struct{}), log: s.log}, nil
}

// swap installs l, tells the watchers, and retires what it replaces.
func (s *Set) swap(l *Loaded) {
	s.mu.Lock()
	old := s.current[l.Name]
	s.current[l.Name] = l
	watches := slices.Collect(maps.Values(s.watches))
	for range watches {
		l.tryAcquire()
	}
	s.mu.Unlock()
	for _, fn := range watches {
		fn(l)
	}
	s.metrics.serving.WithLabelValues(l.Name, l.Version).Set(1)
	from := ""
	if old != nil {
		from = old.Version
		s.metrics.serving.DeleteLabelValues(old.Name, old.Version)
		old.retire()
	}
	s.log.Info("model version serving", "model", l.Name, "version", l.Version, "from", from, "hash", l.Hash)
}

func (s *Set) report(ctx context.Context, v registry.Version, loadErr error) {
	r := registry.LoadReport{Instance: s.cfg.Instance, OK: loadErr == nil, At: time.Now().UTC()}
	if loadErr != nil {
		r.Error = loadErr.Error()
	}
	if err := s.cfg.Store.ReportLoad(ctx, v.Model, v.Version, r); err != nil {
		s.log.Warn("report load to the registry", "model", v.Model, "version", v.Version, "err", err)
	}
}

// Close retires every version and waits until each is released (the
// users' leases end when their requests and transactions finish).
func (s *Set) Close(ctx context.Context) error {
	s.syncMu.Lock() // no load in flight, and none after: closed sets stay empty
	defer s.syncMu.Unlock()
	s.closed = true
	s.mu.Lock()
	cur := slices.Collect(maps.Values(s.current))
	s.current = map[string]*Loaded{}
	s.mu.Unlock()
	for _, l := range cur {
		l.retire()
	}
	for _, l := range cur {
		select {
		case <-l.closed:
		case <-ctx.Done():
			return fmt.Errorf("serving: %s %s still in use at shutdown: %w", l.Name, l.Version, ctx.Err())
		}
	}
	return nil
}

type metrics struct {
	swaps, loadFailures *prometheus.CounterVec
	loadSeconds         *prometheus.HistogramVec
	serving             *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "triage_serving_swaps_total",
			Help: "Model versions swapped in, by model."}, []string{"model"}),
		loadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "triage_serving_load_failures_total",
			Help: "Model versions that failed to load or warm up and were not swapped in, by model."}, []string{"model"}),
		loadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "triage_serving_load_duration_seconds",
			Help: "Time to load and warm a model version before the swap.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}, []string{"model"}),
		serving: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "triage_serving_model_info",
			Help: "1 for the version each model serves."}, []string{"model", "version"}),
	}
	for _, c := range []prometheus.Collector{m.swaps, m.loadFailures, m.loadSeconds, m.serving} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
