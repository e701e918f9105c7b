// Package elastic ships Triage's monitoring documents — drift windows,
// prediction samples and logs — to Elasticsearch in daily indices
// (triage-<kind>-YYYY.MM.DD) shaped by composable index templates.
//
// Shipping never holds up the caller: Index only puts a document into a
// bounded buffer, and a full buffer drops it (counted). Run drains the buffer
// through esutil.BulkIndexer; when Elasticsearch fails, the sink stops
// sending, probes with exponential backoff, reinstalls the templates once it
// answers and resends what failed, up to Config.MaxAttempts per document.
package elastic

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	"github.com/prometheus/client_golang/prometheus"
)

// Kinds of documents; each has an index template and daily indices
// triage-<kind>-YYYY.MM.DD.
const (
	KindDrift       = "drift"
	KindPredictions = "predictions"
	KindLogs        = "logs"
)

// kinds lists every kind Index accepts; a kind's position is its counter slot.
var kinds = [...]string{KindDrift, KindPredictions, KindLogs}

// logsKind is KindLogs' slot.
var logsKind = slices.Index(kinds[:], KindLogs)

// unknownKind is the metrics label (and counter slot) for documents of
// another kind: they are dropped, as no template shapes them.
const unknownKind = "unknown"

// ErrDisabled is returned by New for a config without URLs.
var ErrDisabled = errors.New("elasticsearch: no URLs (set --elasticsearch-url)")

// IndexName is the daily index a document of kind at t goes to (UTC date).
func IndexName(kind string, t time.Time) string {
	return "triage-" + kind + "-" + t.UTC().Format("2006.01.02")
}

// Stats are the sink's document counts since New, over all kinds.
type Stats struct {
	Indexed  uint64 // acknowledged by Elasticsearch
	Failed   uint64 // given up on: refused (mapping errors), out of attempts, not encodable, or in flight at shutdown
	Dropped  uint64 // never sent: the buffer was full, the kind unknown, or the sink stopped
	Buffered int    // waiting in memory now
}

// doc is one document on its way to Elasticsearch.
type doc struct {
	kind     int // index into kinds
	index    string
	id       string
	body     []byte
	attempts int
}

// Sink ships documents to Elasticsearch. Index is safe for concurrent use;
// Run must be called once. A nil *Sink accepts and ignores documents.
type Sink struct {
	cfg       Config
	log       *slog.Logger
	client    *elasticsearch.Client
	templates map[string][]byte

	// closeMu makes "closed, so drop" and "buffered" exclusive: a document
	// put into buf after Run's last drain would be lost uncounted.
	closeMu sync.RWMutex
	closed  bool
	buf     chan *doc

	mu    sync.Mutex
	retry []*doc // sent and failed retryably: resent before buf

	failed    chan struct{} // capacity 1: a request or item failed; stop and back off
	succeeded atomic.Bool   // a bulk request succeeded: the backoff starts over
	closing   atomic.Bool   // Run is stopping: failures are final
	running   atomic.Bool
	pending   atomic.Int64                       // documents handed to the bulk indexer, not yet resolved
	upState   atomic.Int32                       // 0 unknown, 1 up, 2 down: logs each change once
	indexer   atomic.Pointer[esutil.BulkIndexer] // set once Run made it; read by flush hooks

	counts   [3][]atomic.Uint64 // [result][kind]; kind len(kinds) = unknown
	counters [3][]prometheus.Counter
	docs     *prometheus.CounterVec

	lastDropLog, lastFailLog atomic.Int64 // unix nanos, to rate-limit warnings
}

// Results, as counted and labelled.
const (
	resIndexed = iota
	resFailed
	resDropped
)

var resultNames = [3]string{"indexed", "failed", "dropped"}

// quietKey marks the sink's own log records: a LogHandler feeding this sink
// must not ship them, or a failing Elasticsearch would feed on itself.
type quietKey struct{}

var quietCtx = context.WithValue(context.Background(), quietKey{}, true)

func isQuiet(ctx context.Context) bool { return ctx != nil && ctx.Value(quietKey{}) != nil }

// New returns a sink for cfg, its metrics registered on reg (nil: not
// registered). It does not connect; Run does. A config without URLs gives
// ErrDisabled.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, ErrDisabled
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	transport := cfg.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// A node that is down must fail fast so the sink backs off instead
		// of hanging; a slow one is bounded per request by RequestTimeout.
		t.DialContext = (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.ResponseHeaderTimeout = cfg.RequestTimeout
		t.MaxIdleConnsPerHost = 4
		transport = t
	}
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: cfg.URLs,
		Username:  cfg.Username,
		Password:  cfg.Password,
		APIKey:    cfg.APIKey,
		Transport: transport,
		// The sink retries whole batches itself, with backoff and a bounded
		// buffer; transport-level retries would only stack up behind it.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client for %v: %w", cfg.URLs, err)
	}
	s := &Sink{
		cfg:       cfg,
		log:       log.With("log.logger", "triage.elasticsearch"),
		client:    client,
		templates: Templates(),
		buf:       make(chan *doc, cfg.BufferDocs),
		failed:    make(chan struct{}, 1),
	}
	if err := s.registerMetrics(reg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sink) registerMetrics(reg prometheus.Registerer) error {
	docs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "triage_elasticsearch_documents_total",
		Help: "Monitoring documents by kind and result: indexed (acknowledged), failed (given up after retries or refused), dropped (buffer full or sink stopped).",
	}, []string{"kind", "result"})
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "triage_elasticsearch_up",
		Help: "1 when the last request to Elasticsearch succeeded.",
	}, func() float64 {
		if s.upState.Load() == 1 {
			return 1
		}
		return 0
	})
	buffered := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "triage_elasticsearch_buffer_documents",
		Help: "Monitoring documents held in memory, waiting for Elasticsearch.",
	}, func() float64 { return float64(s.buffered()) })
	s.docs = docs
	for r := range s.counts {
		s.counts[r] = make([]atomic.Uint64, len(kinds)+1)
		s.counters[r] = make([]prometheus.Counter, len(kinds))
		for k, kind := range kinds {
			// Created now, at 0, so dashboards and alerts see every known
			// series before the first document.
			s.counters[r][k] = docs.WithLabelValues(kind, resultNames[r])
		}
	}
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{docs, up, buffered} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register elasticsearch metrics: %w", err)
		}
	}
	return nil
}

func (s *Sink) count(result, kind int) {
	s.counts[result][kind].Add(1)
	if kind < len(kinds) {
		s.counters[result][kind].Inc()
	} else {
		s.docs.WithLabelValues(unknownKind, resultNames[result]).Inc() // appears only when used
	}
}

// Stats returns the document counts so far.
func (s *Sink) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	var st Stats
	for k := range s.counts[resIndexed] {
		st.Indexed += s.counts[resIndexed][k].Load()
		st.Failed += s.counts[resFailed][k].Load()
		st.Dropped += s.counts[resDropped][k].Load()
	}
	st.Buffered = s.buffered()
	return st
}

func (s *Sink) buffered() int {
	s.mu.Lock()
	n := len(s.retry)
	s.mu.Unlock()
	return n + len(s.buf)
}

// Index queues doc (encoded as JSON now, so the caller may reuse it) for
// the daily index of kind at t (zero t: now). It never blocks: when the
// buffer is full, or Run has stopped, the document is dropped and counted.
// kind is KindDrift, KindPredictions or KindLogs.
func (s *Sink) Index(kind string, t time.Time, doc any) {
	if s == nil {
		return
	}
	k := slices.Index(kinds[:], kind)
	if k < 0 {
		s.count(resDropped, len(kinds))
		s.warnEvery(&s.lastFailLog, "elasticsearch: document of unknown kind dropped", slog.String("kind", kind))
		return
	}
	body, err := json.Marshal(doc)
	if err != nil {
		s.count(resFailed, k)
		s.warnEvery(&s.lastFailLog, "elasticsearch: document not encodable as JSON, dropped",
			slog.String("kind", kind), slog.String("error.message", err.Error()))
		return
	}
	s.enqueue(k, t, body)
}

// enqueue buffers an encoded document; body is owned by the sink from here.
func (s *Sink) enqueue(k int, t time.Time, body []byte) {
	if t.IsZero() {
		t = time.Now()
	}
	d := &doc{kind: k, index: IndexName(kinds[k], t), id: newID(), body: body}
	s.closeMu.RLock()
	ok := !s.closed
	// Prediction samples are the least valuable documents and the most
	// numerous: they may fill only part of the buffer, so a flood of them
	// never crowds out drift windows and logs.
	if ok && kinds[k] == KindPredictions && len(s.buf) >= sampleRoom(s.cfg.BufferDocs) {
		ok = false
	}
	if ok {
		select {
		case s.buf <- d:
		default:
			ok = false
		}
	}
	s.closeMu.RUnlock()
	if !ok {
		s.count(resDropped, k)
		s.warnEvery(&s.lastDropLog, "elasticsearch: buffer full or sink stopped, dropping documents",
			slog.Int("elasticsearch.buffer", s.cfg.BufferDocs))
	}
}

// sampleRoom is how much of a buffer of n documents prediction samples may
// fill: four fifths, leaving the rest to drift windows and logs.
func sampleRoom(n int) int { return max(1, n*4/5) }

// newID gives each document its own id, so that resending a batch whose
// response was lost overwrites instead of duplicating.
func newID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// warnEvery logs at most once per 30 s per gate, so an outage or a full
// buffer gives one line, not one per document.
func (s *Sink) warnEvery(gate *atomic.Int64, msg string, attrs ...slog.Attr) {
	now := time.Now().UnixNano()
	last := gate.Load()
	if now-last < int64(30*time.Second) || !gate.CompareAndSwap(last, now) {
		return
	}
	s.log.LogAttrs(quietCtx, slog.LevelWarn, msg, attrs...)
}

// Run ships buffered documents until ctx ends, then flushes what it can
// within Config.ShutdownTimeout; documents still buffered after that are
// counted as dropped. It returns nil once stopped: Elasticsearch being
// unreachable is never an error here, only counted and logged.
func (s *Sink) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("elasticsearch sink: Run called twice")
	}
	// Flushes outlive ctx (the final flush runs after it ends) but not Run.
	flushBase, cancelFlushes := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlushes()
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client: s.client,
		// One worker keeps batches in order and bounds what is in flight
		// to one request; monitoring volumes need no more.
		NumWorkers:    1,
		FlushBytes:    s.cfg.FlushBytes,
		FlushInterval: s.cfg.FlushInterval,
		OnFlushStart:  func(context.Context) context.Context { return s.startFlush(flushBase) },
		OnFlushEnd:    s.endFlush,
		OnError:       s.onIndexerError,
	})
	if err != nil {
		return fmt.Errorf("elasticsearch bulk indexer: %w", err)
	}
	s.indexer.Store(&bi)

	bo := &backoff.ExponentialBackOff{
		InitialInterval:     s.cfg.RetryInitial,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         s.cfg.RetryMax,
	}
	bo.Reset()
	connected := false
	var wait time.Duration // before the next connection attempt
	backOff := func() {
		if s.succeeded.Swap(false) {
			bo.Reset()
		}
		connected = false
		wait = bo.NextBackOff()
	}
loop:
	for {
		if !connected {
			if !sleep(ctx, wait) {
				break
			}
			if err := s.connect(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				s.markDown(err)
				backOff()
				continue
			}
			connected = true
			s.markUp()
			// Signals from before the reconnection speak of requests made
			// while down; their documents are already queued for resending.
			select {
			case <-s.failed:
			default:
			}
		}
		if s.succeeded.Swap(false) {
			bo.Reset()
		}
		select {
		case <-s.failed:
			backOff()
			continue
		default:
		}
		d := s.popRetry()
		if d == nil {
			select {
			case <-ctx.Done():
				break loop
			case <-s.failed:
				backOff()
				continue
			case d = <-s.buf:
			}
		}
		if !s.add(ctx, bi, d) {
			break
		}
	}
	s.shutdown(ctx, bi, connected, cancelFlushes)
	return nil
}

// shutdown flushes within ShutdownTimeout and accounts for every document.
func (s *Sink) shutdown(ctx context.Context, bi esutil.BulkIndexer, connected bool, cancelFlushes context.CancelFunc) {
	s.closing.Store(true)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if connected {
		for dctx.Err() == nil {
			d := s.popRetry()
			if d == nil {
				select {
				case d = <-s.buf:
				default:
				}
			}
			if d == nil || !s.add(dctx, bi, d) {
				break
			}
		}
	}
	if err := bi.Close(dctx); err != nil {
		s.log.LogAttrs(quietCtx, slog.LevelWarn, "elasticsearch: final flush cut short",
			slog.Duration("timeout", s.cfg.ShutdownTimeout), slog.String("error.message", err.Error()))
	}
	// A flush still running has had its time: abort it, so its documents
	// resolve (as failed) now rather than after RequestTimeout.
	cancelFlushes()
	for deadline := time.Now().Add(2 * time.Second); s.pending.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}

	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
	left := 0
	for d := s.popRetry(); d != nil; d = s.popRetry() {
		s.count(resDropped, d.kind)
		left++
	}
	for {
		select {
		case d := <-s.buf:
			s.count(resDropped, d.kind)
			left++
			continue
		default:
		}
		break
	}
	if left > 0 {
		s.log.LogAttrs(quietCtx, slog.LevelWarn, "elasticsearch: documents not sent before shutdown, dropped", slog.Int("documents", left))
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// add hands d to the bulk indexer; false when ctx ended first (d goes back
// to the front of the retry queue, for shutdown to account for).
func (s *Sink) add(ctx context.Context, bi esutil.BulkIndexer, d *doc) bool {
	d.attempts++
	s.pending.Add(1)
	err := bi.Add(ctx, esutil.BulkIndexerItem{
		Index:      d.index,
		Action:     "index",
		DocumentID: d.id,
		Body:       bytes.NewReader(d.body),
		OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
			s.count(resIndexed, d.kind)
			s.pending.Add(-1)
		},
		OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
			s.itemFailed(d, res, err)
			s.pending.Add(-1)
		},
	})
	if err != nil {
		s.pending.Add(-1)
		d.attempts--
		s.mu.Lock()
		s.retry = slices.Insert(s.retry, 0, d)
		s.mu.Unlock()
		return false
	}
	return true
}

func (s *Sink) popRetry() *doc {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.retry) == 0 {
		return nil
	}
	d := s.retry[0]
	s.retry[0] = nil
	s.retry = s.retry[1:]
	return d
}

// itemFailed decides one failed document's fate. err != nil: the whole
// request failed (unreachable, timeout, 5xx); else the item's own status.
func (s *Sink) itemFailed(d *doc, res esutil.BulkIndexerResponseItem, err error) {
	retryable := err != nil || res.Status == http.StatusTooManyRequests ||
		res.Status == http.StatusBadGateway || res.Status == http.StatusServiceUnavailable ||
		res.Status == http.StatusGatewayTimeout
	if retryable && !s.closing.Load() && d.attempts < s.cfg.MaxAttempts {
		s.mu.Lock()
		// Bounded by one bulk request's documents: the pump stops adding
		// once it sees the failure signal below.
		s.retry = append(s.retry, d)
		s.mu.Unlock()
		select {
		case s.failed <- struct{}{}:
		default:
		}
		return
	}
	s.count(resFailed, d.kind)
	attrs := []slog.Attr{slog.String("index", d.index), slog.Int("attempts", d.attempts)}
	if err != nil {
		attrs = append(attrs, slog.String("error.message", err.Error()))
	} else {
		attrs = append(attrs, slog.Int("status", res.Status), slog.String("error.type", res.Error.Type),
			slog.String("error.message", res.Error.Reason))
	}
	s.warnEvery(&s.lastFailLog, "elasticsearch: document failed", attrs...)
	if err == nil && !retryable {
		return // refused on its own merits: the next ones may pass
	}
	select {
	case s.failed <- struct{}{}:
	default:
	}
}

// flushState follows one bulk request from OnFlushStart to OnFlushEnd.
type flushState struct {
	cancel   context.CancelFunc
	requests uint64 // the indexer's request count at the start
	err      error
}

type flushKey struct{}

// requests is the bulk indexer's count of requests sent.
func (s *Sink) requests() uint64 {
	if bi := s.indexer.Load(); bi != nil {
		return (*bi).Stats().NumRequests
	}
	return 0
}

func (s *Sink) startFlush(base context.Context) context.Context {
	ctx, cancel := context.WithTimeout(base, s.cfg.RequestTimeout)
	return context.WithValue(ctx, flushKey{}, &flushState{cancel: cancel, requests: s.requests()})
}

func (s *Sink) onIndexerError(ctx context.Context, err error) {
	if fs, ok := ctx.Value(flushKey{}).(*flushState); ok {
		fs.err = err
	}
	// Other calls report Add or Close giving up on their context, which
	// Run handles itself.
}

func (s *Sink) endFlush(ctx context.Context) {
	fs, ok := ctx.Value(flushKey{}).(*flushState)
	if !ok {
		return
	}
	fs.cancel()
	switch {
	case fs.err != nil:
		s.markDown(fs.err)
	case s.requests() > fs.requests: // a request was sent and answered
		s.succeeded.Store(true)
		s.markUp()
	}
}

func (s *Sink) markUp() {
	if s.upState.Swap(1) != 1 {
		s.log.LogAttrs(quietCtx, slog.LevelInfo, "elasticsearch: connected", slog.Any("urls", s.cfg.URLs))
	}
}

func (s *Sink) markDown(err error) {
	if s.upState.Swap(2) != 2 && !s.closing.Load() {
		s.log.LogAttrs(quietCtx, slog.LevelWarn, "elasticsearch: unreachable, buffering and retrying with backoff",
			slog.Any("urls", s.cfg.URLs), slog.String("error.message", err.Error()))
	}
}

// connect installs the index templates, which is also the probe that
// Elasticsearch answers. A template Elasticsearch refuses (4xx) is logged
// and skipped: retrying cannot fix it, and documents still index with
// dynamic mappings.
func (s *Sink) connect(ctx context.Context) error {
	for _, name := range templateNames(s.templates) {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		res, err := s.client.Indices.PutIndexTemplate(name, bytes.NewReader(s.templates[name]),
			s.client.Indices.PutIndexTemplate.WithContext(rctx))
		if err != nil {
			cancel()
			return fmt.Errorf("put index template %s: %w", name, err)
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 2048))
		_ = res.Body.Close()
		cancel()
		switch {
		case !res.IsError():
		case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
			return fmt.Errorf("put index template %s: %s: %s", name, res.Status(), body)
		default:
			s.log.LogAttrs(quietCtx, slog.LevelError, "elasticsearch: index template refused; documents will get dynamic mappings",
				slog.String("template", name), slog.Int("status", res.StatusCode), slog.String("error.message", string(body)))
		}
	}
	return nil
}
