// Package monitor is the monitor role: it follows the predictions topic,
// cuts each model's traffic per input topic into tumbling windows (by count
// and by time), compares every window with the model's training reference
// (package drift) and reports it: every window to Elasticsearch and to
// GET /v1/drift, a window over any threshold as a drift event on
// triage.drift, in a metric and in a log line. Human labels from the
// feedback topic, where they exist, give a window's true accuracy beside
// the estimate.
//
// Windows live in memory: a restarted monitor resumes from its group's
// committed offsets with empty windows, so at most one partial window per
// model and topic goes unreported.
package monitor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/internal/kafkalog"
	"github.com/triage-ml/triage/schemas"
)

// Defaults, shared by RegisterFlags and Validate.
const (
	DefaultPredictionsTopic = "triage.predictions"
	DefaultFeedbackTopic    = "triage.feedback"
	DefaultDriftTopic       = "triage.drift"
	DefaultGroup            = "triage-monitor"
	DefaultWindowTime       = time.Minute
	DefaultMinCount         = 100
	DefaultHistory          = 500
	DefaultSampleRate       = 0.02
	DefaultLabelMemory      = 200_000
	DefaultDomainEvery      = 5
	DefaultTextMemory       = 20_000
)

// maxTextBytes caps a remembered input text: the domain test reads only
// the first ~2,000 characters.
const maxTextBytes = 4096

// Indexer receives documents for Elasticsearch; *elastic.Sink is one. It
// must not block.
type Indexer interface {
	Index(kind string, t time.Time, doc any)
}

// ModelReference is what a model version's bundle says about its
// training traffic: the statistics' reference and the domain test's.
// Either may be nil (older bundles): windows are then reported without
// those alarms.
type ModelReference struct {
	Drift  *drift.Reference
	Domain *drift.DomainReference
}

// ReferenceFunc returns a model version's references.
type ReferenceFunc func(ctx context.Context, model, version string) (ModelReference, error)

// Config configures a Monitor.
type Config struct {
	Brokers          []string
	PredictionsTopic string
	FeedbackTopic    string // "" = no true accuracy
	DriftTopic       string // "" = drift events only in logs, metrics and Elasticsearch
	Group            string
	// WindowCount closes a window after this many predictions; 0 takes the
	// model reference's window size (what its thresholds were set for).
	WindowCount int
	// WindowTime closes a window this long after it opened, however few
	// predictions it holds; windows under MinCount are then reported
	// without alarms, since the thresholds do not hold for them.
	WindowTime time.Duration
	MinCount   int
	History    int     // windows kept per model and topic for Report
	SampleRate float64 // share of predictions indexed into triage-predictions-*
	// LabelMemory bounds the human labels kept to match predictions.
	LabelMemory int
	// StartAtEnd makes a new group start at the end of the predictions
	// topic rather than its beginning.
	StartAtEnd bool
	// DomainEvery runs the domain-classifier test (reference texts vs the
	// window's, Evidently's text drift method) on every DomainEvery-th
	// window of a stream; 0 turns it off. It reads the input topics for
	// the texts, remembering the last TextMemory of them.
	DomainEvery int
	TextMemory  int
	// InputTopics are read for texts from the start; topics predictions
	// name later are added as they appear.
	InputTopics []string

	References ReferenceFunc
	Indexer    Indexer // nil: no Elasticsearch
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	KafkaOpts  []kgo.Opt
}

// RegisterFlags binds the monitor's settings to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PredictionsTopic, "monitor-predictions-topic", DefaultPredictionsTopic, "predictions topic the monitor follows")
	fs.StringVar(&c.FeedbackTopic, "monitor-feedback-topic", DefaultFeedbackTopic, `human labels, for windows' true accuracy ("" = none)`)
	fs.StringVar(&c.DriftTopic, "monitor-drift-topic", DefaultDriftTopic, `where drift events go ("" = none)`)
	fs.StringVar(&c.Group, "monitor-group", DefaultGroup, "the monitor's consumer group")
	fs.IntVar(&c.WindowCount, "monitor-window-count", 0, "predictions per window (0 = the model's reference window, 500 by default)")
	fs.DurationVar(&c.WindowTime, "monitor-window-time", DefaultWindowTime, "a window closes this long after it opened, however full")
	fs.IntVar(&c.MinCount, "monitor-min-count", DefaultMinCount, "windows closed by time with fewer predictions raise no alarms")
	fs.IntVar(&c.History, "monitor-history", DefaultHistory, "windows kept per model and topic for GET /v1/drift")
	fs.Float64Var(&c.SampleRate, "monitor-sample-rate", DefaultSampleRate, "share of predictions indexed into Elasticsearch (triage-predictions-*)")
	fs.BoolVar(&c.StartAtEnd, "monitor-start-at-end", false, "a new monitor group starts at the end of the predictions topic (default: its beginning)")
	fs.IntVar(&c.DomainEvery, "monitor-domain-every", DefaultDomainEvery, "domain-classifier test on every Nth window (reads the input topics for texts; 0 = off)")
	fs.IntVar(&c.TextMemory, "monitor-text-memory", DefaultTextMemory, "input texts remembered for the domain-classifier test")
}

// Validate fills defaults and reports every problem at once.
func (c *Config) Validate() error {
	c.PredictionsTopic = cmp.Or(c.PredictionsTopic, DefaultPredictionsTopic)
	c.Group = cmp.Or(c.Group, DefaultGroup)
	c.WindowTime = cmp.Or(c.WindowTime, DefaultWindowTime)
	c.MinCount = cmp.Or(c.MinCount, DefaultMinCount)
	c.History = cmp.Or(c.History, DefaultHistory)
	c.LabelMemory = cmp.Or(c.LabelMemory, DefaultLabelMemory)
	c.TextMemory = cmp.Or(c.TextMemory, DefaultTextMemory)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("monitor: no brokers (set --brokers)"))
	}
	if c.WindowCount < 0 || c.WindowCount == 1 {
		errs = append(errs, fmt.Errorf("--monitor-window-count %d: use 0 (the model's reference) or at least 2", c.WindowCount))
	}
	if c.WindowTime < time.Second {
		errs = append(errs, fmt.Errorf("--monitor-window-time %v: must be at least 1s", c.WindowTime))
	}
	if c.MinCount < 2 {
		errs = append(errs, fmt.Errorf("--monitor-min-count %d: must be at least 2", c.MinCount))
	}
	if c.DomainEvery < 0 {
		errs = append(errs, fmt.Errorf("--monitor-domain-every %d: use 0 (off) or a positive count of windows", c.DomainEvery))
	}
	if c.SampleRate < 0 || c.SampleRate > 1 {
		errs = append(errs, fmt.Errorf("--monitor-sample-rate %v: must be in [0, 1]", c.SampleRate))
	}
	if c.References == nil {
		errs = append(errs, errors.New("monitor: no reference source (a model registry)"))
	}
	return errors.Join(errs...)
}

// Monitor is the monitor role.
type Monitor struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	cl      *kgo.Client
	inputs  *kgo.Client // input topics, for the domain test's texts; nil when off

	mu      sync.Mutex
	streams map[streamKey]*stream
	refs    map[modelKey]*modelRef
	labels  *labelMemory
	texts   *labelMemory // id -> input text
	topics  map[string]bool
	rng     *rand.Rand
}

type streamKey struct{ model, topic string }
type modelKey struct{ model, version string }

// modelRef is a version's reference, or why it has none.
type modelRef struct {
	ref    *drift.Reference
	domain *drift.DomainReference
	index  map[string]int // label -> class index
	err    error
}

// New validates cfg and connects the producer of drift events.
func New(cfg Config) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("monitor metrics: %w", err)
	}
	reset := kgo.NewOffset().AtStart()
	if cfg.StartAtEnd {
		reset = kgo.NewOffset().AtEnd()
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID("triage-monitor"),
		kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(cfg.PredictionsTopic), kgo.ConsumeResetOffset(reset),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.WithLogger(kafkalog.New(cfg.Logger)),
		kgo.AllowAutoTopicCreation()}, cfg.KafkaOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("monitor: kafka client: %w", err)
	}
	mon := &Monitor{cfg: cfg, log: cfg.Logger, metrics: m, cl: cl, streams: map[streamKey]*stream{},
		refs: map[modelKey]*modelRef{}, labels: newLabelMemory(cfg.LabelMemory), texts: newLabelMemory(cfg.TextMemory),
		topics: map[string]bool{}, rng: rand.New(rand.NewPCG(1, 2))}
	if cfg.DomainEvery > 0 {
		// Input topics are added as predictions name them, read from a
		// little before now: a window's inputs precede its predictions.
		since := time.Now().Add(-2 * cfg.WindowTime).UnixMilli()
		opts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID("triage-monitor-inputs"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(since)), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.WithLogger(kafkalog.New(cfg.Logger))}
		if len(cfg.InputTopics) > 0 {
			opts = append(opts, kgo.ConsumeTopics(cfg.InputTopics...))
			for _, t := range cfg.InputTopics {
				mon.topics[t] = true
			}
		}
		mon.inputs, err = kgo.NewClient(append(opts, cfg.KafkaOpts...)...)
		if err != nil {
			cl.Close()
			return nil, fmt.Errorf("monitor: kafka client for input texts: %w", err)
		}
	}
	return mon, nil
}

// Run follows the predictions (and feedback) topics until ctx ends, then
// reports nothing more: partial windows are dropped, not flushed, so every
// reported window is one the thresholds hold for.
func (m *Monitor) Run(ctx context.Context) error {
	defer m.cl.Close()
	done := make(chan struct{})
	defer func() { <-done }()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(done)
		if m.cfg.FeedbackTopic != "" {
			m.followFeedback(fctx)
		}
	}()
	if m.inputs != nil {
		inputsDone := make(chan struct{})
		defer func() { <-inputsDone }()
		go func() {
			defer close(inputsDone)
			m.followInputs(fctx)
		}()
	}
	tick := time.NewTicker(min(m.cfg.WindowTime/4, time.Second))
	defer tick.Stop()
	polled := make(chan kgo.Fetches)
	go func() {
		defer close(polled)
		for {
			fs := m.cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			select {
			case polled <- fs:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.closeExpired(ctx)
		case fs, ok := <-polled:
			if !ok {
				return nil
			}
			fs.EachError(func(t string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					m.log.Warn("monitor fetch error", "topic", t, "partition", p, "err", err)
				}
			})
			fs.EachRecord(func(r *kgo.Record) { m.observe(ctx, r) })
		}
	}
}

// observe adds one prediction record to its window.
func (m *Monitor) observe(ctx context.Context, r *kgo.Record) {
	if k := header(r, "triage-kind"); k != "" && k != "prediction" {
		return // dead letters share the topic in some setups; they are not predictions
	}
	var p schemas.Prediction
	if err := json.Unmarshal(r.Value, &p); err != nil || p.ID == "" || p.Model.Name == "" {
		m.metrics.skipped.WithLabelValues("undecodable").Inc()
		return
	}
	if p.Signals == nil {
		m.metrics.skipped.WithLabelValues("no_signals").Inc()
		return
	}
	ref := m.reference(ctx, p.Model.Name, p.Model.Version)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inputs != nil && !m.topics[p.Input.Topic] && p.Input.Topic != "" {
		m.topics[p.Input.Topic] = true
		m.inputs.AddConsumeTopics(p.Input.Topic)
	}
	key := streamKey{p.Model.Name, p.Input.Topic}
	s := m.streams[key]
	if s == nil {
		s = &stream{key: key}
		m.streams[key] = s
		m.metrics.init(key)
	}
	if s.win != nil && s.version != p.Model.Version {
		m.closeLocked(ctx, s, "swap") // a window holds one version's predictions
	}
	if s.win == nil {
		s.open(p.Model.Version, ref, p.ClassifiedAt)
	}
	o := drift.Observation{Label: -1, Confidence: p.Confidence, Calibrated: p.Signals.Calibrated, Margin: p.Signals.Margin,
		Tokens: p.Signals.Tokens, OOVRate: p.Signals.OOVRate, EmbedDist: math.NaN(), True: -1}
	if p.Signals.EmbedDist != nil {
		o.EmbedDist = *p.Signals.EmbedDist
	}
	if ref.index != nil {
		if i, ok := ref.index[p.Label]; ok {
			o.Label = i
		}
		if l, ok := m.labels.get(p.ID); ok {
			if i, ok := ref.index[l]; ok {
				o.True = i
			} else {
				o.True = len(ref.index) // a label the model does not know: always wrong
			}
		}
	}
	s.add(o, p.ClassifiedAt)
	if m.inputs != nil && ref.domain != nil {
		s.sampleID(p.ID, m.rng)
	}
	if m.cfg.Indexer != nil && m.cfg.SampleRate > 0 && m.rng.Float64() < m.cfg.SampleRate {
		m.cfg.Indexer.Index("predictions", p.ClassifiedAt, predictionDoc(p))
	}
	if s.count >= m.windowCount(ref) {
		m.closeLocked(ctx, s, "count")
	}
}

func (m *Monitor) windowCount(ref *modelRef) int {
	if m.cfg.WindowCount > 0 {
		return m.cfg.WindowCount
	}
	if ref.ref != nil && ref.ref.WindowSize > 0 {
		return ref.ref.WindowSize
	}
	return 500
}

// closeExpired closes windows open longer than WindowTime.
func (m *Monitor) closeExpired(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	for _, s := range m.streams {
		if s.win != nil && now.Sub(s.openedAt) >= m.cfg.WindowTime {
			m.closeLocked(ctx, s, "time")
		}
	}
}

// closeLocked reports s's window and starts none (the next prediction
// opens one).
func (m *Monitor) closeLocked(ctx context.Context, s *stream, kind string) {
	ids := s.ids
	w := s.close(kind, m.cfg.MinCount)
	if w == nil {
		return
	}
	s.closed++
	if m.inputs != nil && s.ref.domain != nil && s.closed%m.cfg.DomainEvery == 0 {
		m.domainTest(s, w, ids, kind)
	}
	s.history = append(s.history, *w)
	if over := len(s.history) - m.cfg.History; over > 0 {
		s.history = slices.Delete(s.history, 0, over)
	}
	m.metrics.window(s.key, *w)
	if m.cfg.Indexer != nil {
		m.cfg.Indexer.Index("drift", w.Timestamp, w)
	}
	if w.DomainAUC != nil {
		m.metrics.domainAUC.WithLabelValues(w.Model.Name, w.Model.Version, w.Topic).Set(*w.DomainAUC)
	}
	attrs := []any{"model.name", w.Model.Name, "model.version", w.Model.Version, "topic", w.Topic,
		"window.count", w.Window.Count, "window.kind", w.Window.Kind, "label_psi", w.LabelPSI,
		"estimated_accuracy", w.EstimatedAccuracy, "confidence.mean", w.Confidence.Mean}
	if w.TrueAccuracy != nil {
		attrs = append(attrs, "true_accuracy", *w.TrueAccuracy, "labelled", w.Labelled)
	}
	if !w.Drift {
		m.log.Debug("window", attrs...)
		return
	}
	s.events++
	m.log.Warn("drift detected", append(attrs, "event.action", "drift", "alerts", strings.Join(w.Alerts, ","))...)
	if m.cfg.DriftTopic == "" {
		return
	}
	raw, err := json.Marshal(w)
	if err != nil {
		m.log.Error("drift event not encoded", "err", err)
		return
	}
	rec := &kgo.Record{Topic: m.cfg.DriftTopic, Key: []byte(w.Model.Name), Value: raw,
		Headers: []kgo.RecordHeader{{Key: "triage-schema", Value: []byte(schemas.Version + "/drift")}}}
	m.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
		if err != nil && ctx.Err() == nil {
			m.metrics.eventErrors.Inc()
			m.log.Error("drift event not produced", "topic", m.cfg.DriftTopic, "err", err)
		}
	})
}

// reference returns (and caches) a version's reference.
func (m *Monitor) reference(ctx context.Context, model, version string) *modelRef {
	k := modelKey{model, version}
	m.mu.Lock()
	r, ok := m.refs[k]
	m.mu.Unlock()
	if ok {
		return r
	}
	refs, err := m.cfg.References(ctx, model, version)
	ref := refs.Drift
	r = &modelRef{ref: ref, domain: refs.Domain, err: err}
	switch {
	case err != nil:
		m.log.Warn("no drift reference: windows of this version raise no alarms", "model.name", model, "model.version", version, "err", err)
	case ref == nil:
		m.log.Warn("model version has no drift reference (trained before monitoring): windows raise no alarms", "model.name", model, "model.version", version)
	default:
		r.index = make(map[string]int, len(ref.Labels))
		for i, l := range ref.Labels {
			r.index[l] = i
		}
	}
	m.mu.Lock()
	m.refs[k] = r
	m.mu.Unlock()
	return r
}

// followFeedback keeps the latest human label per record id.
func (m *Monitor) followFeedback(ctx context.Context) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(m.cfg.Brokers...), kgo.ClientID("triage-monitor-feedback"),
		kgo.ConsumeTopics(m.cfg.FeedbackTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.WithLogger(kafkalog.New(m.log))}, m.cfg.KafkaOpts...)...)
	if err != nil {
		m.log.Error("monitor: feedback client", "err", err)
		return
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			var f schemas.Feedback
			if json.Unmarshal(r.Value, &f) != nil || f.ID == "" || f.Label == "" {
				return // the trainer dead-letters bad feedback; here it only goes unused
			}
			m.mu.Lock()
			m.labels.put(f.ID, f.Label)
			m.mu.Unlock()
		})
	}
}

// followInputs remembers the input topics' texts by record id, for the
// domain test.
func (m *Monitor) followInputs(ctx context.Context) {
	defer m.inputs.Close()
	for {
		fs := m.inputs.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			var in schemas.Input
			if json.Unmarshal(r.Value, &in) != nil || in.ID == "" || in.Text == "" {
				return // the consumer dead-letters it; no prediction will ask for it
			}
			text := in.Text
			if len(text) > maxTextBytes {
				text = strings.ToValidUTF8(text[:maxTextBytes], "")
			}
			m.mu.Lock()
			m.texts.put(in.ID, text)
			m.mu.Unlock()
		})
	}
}

// domainTest runs the domain-classifier test on the window's sampled
// texts and adds its AUC (and alert) to w.
func (m *Monitor) domainTest(s *stream, w *schemas.DriftWindow, ids []string, kind string) {
	var texts []string
	for _, id := range ids {
		if t, ok := m.texts.get(id); ok {
			texts = append(texts, t)
		}
	}
	if len(texts) < minDomainTexts {
		m.metrics.skipped.WithLabelValues("domain_test_texts").Inc()
		return
	}
	start := time.Now()
	auc, alarm, err := s.ref.domain.Test(texts, uint64(s.closed))
	if err != nil {
		m.log.Warn("domain test failed", "model.name", w.Model.Name, "err", err)
		return
	}
	m.metrics.domainSeconds.Observe(time.Since(start).Seconds())
	w.DomainAUC = &auc
	w.Thresholds = append(w.Thresholds, schemas.Threshold{Statistic: "domain_auc", Direction: drift.Above, Value: s.ref.domain.Threshold})
	if alarm && (kind == "count" || w.Window.Count >= m.cfg.MinCount) {
		w.Alerts = append(w.Alerts, "domain_auc")
		slices.Sort(w.Alerts)
		w.Drift = true
	}
}

// minDomainTexts is the fewest window texts the domain test runs on.
const minDomainTexts = 50

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// predictionDoc is a prediction as the triage-predictions-* index holds it.
func predictionDoc(p schemas.Prediction) map[string]any {
	doc := map[string]any{"@timestamp": p.ClassifiedAt, "event": map[string]any{"id": p.ID},
		"model": p.Model, "topic": p.Input.Topic, "label": p.Label, "confidence": p.Confidence,
		"latency_ms": p.LatencyMS, "truncated": p.Truncated}
	if s := p.Signals; s != nil {
		doc["calibrated_confidence"], doc["margin"] = s.Calibrated, s.Margin
		doc["input"] = map[string]any{"tokens": s.Tokens, "oov_rate": s.OOVRate}
	}
	return doc
}
