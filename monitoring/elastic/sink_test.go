package elastic

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testConfig is fast: small batches, short backoff.
func testConfig(url string) Config {
	return Config{
		URLs:            []string{url},
		FlushInterval:   20 * time.Millisecond,
		BufferDocs:      1000,
		RetryInitial:    10 * time.Millisecond,
		RetryMax:        50 * time.Millisecond,
		RequestTimeout:  2 * time.Second,
		ShutdownTimeout: 2 * time.Second,
	}
}

// runSink starts s.Run and returns a stop func that cancels and waits.
func runSink(t *testing.T, s *Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return 10 s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestConfigFlagsAndValidate(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.Enabled() || c.BufferDocs != 10000 || c.FlushInterval != 2*time.Second {
		t.Fatalf("defaults: enabled=%v buffer=%d flush=%v", c.Enabled(), c.BufferDocs, c.FlushInterval)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("disabled default config: %v", err)
	}
	if err := fs.Parse([]string{"--elasticsearch-url", "http://a:9200, https://b:9200,", "--elasticsearch-buffer", "5"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.URLs, []string{"http://a:9200", "https://b:9200"}) || c.BufferDocs != 5 {
		t.Fatalf("parsed: %q %d", c.URLs, c.BufferDocs)
	}
	if got := fs.Lookup("elasticsearch-url").Value.String(); got != "http://a:9200,https://b:9200" {
		t.Fatalf("flag String() = %q", got)
	}

	bad := Config{URLs: []string{"a:9200"}, BufferDocs: -1, FlushInterval: time.Millisecond, APIKey: "k", Username: "u"}
	err := bad.Validate()
	for _, want := range []string{
		`--elasticsearch-url "a:9200": want http://host:port`,
		"--elasticsearch-buffer -1: must be at least 1",
		"--elasticsearch-flush-interval 1ms: must be at least 10ms",
		"not both",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	if _, err := New(Config{}, nil, nil); !errors.Is(err, ErrDisabled) {
		t.Fatalf("New without URLs: %v, want ErrDisabled", err)
	}
}

func TestIndexName(t *testing.T) {
	// 23:30 at UTC-5 is the next day in UTC.
	at := time.Date(2025, 3, 9, 23, 30, 0, 0, time.FixedZone("x", -5*3600))
	if got := IndexName(KindDrift, at); got != "triage-drift-2025.03.10" {
		t.Fatalf("IndexName = %q", got)
	}
}

func TestSinkInstallsTemplatesAndIndexes(t *testing.T) {
	es := newFakeES(t)
	reg := prometheus.NewRegistry()
	s, err := New(testConfig(es.URL), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Index(KindDrift, at, map[string]any{"@timestamp": at, "label_psi": 0.1})
	s.Index(KindPredictions, at, map[string]any{"@timestamp": at, "label": "card_arrival"})
	s.Index(KindLogs, at, map[string]any{"message": "hi"})
	runSink(t, s)
	waitFor(t, 5*time.Second, "3 documents indexed", func() bool { return s.Stats().Indexed == 3 })

	docs, templates, _ := es.snapshot()
	slices.Sort(templates)
	if want := []string{"triage-drift", "triage-logs", "triage-predictions"}; !slices.Equal(templates, want) {
		t.Fatalf("templates installed: %v, want %v", templates, want)
	}
	var indices []string
	for _, d := range docs {
		indices = append(indices, d.Index)
	}
	slices.Sort(indices)
	if want := []string{"triage-drift-2025.01.02", "triage-logs-2025.01.02", "triage-predictions-2025.01.02"}; !slices.Equal(indices, want) {
		t.Fatalf("indices: %v, want %v", indices, want)
	}
	if got := testutil.ToFloat64(s.docs.WithLabelValues(KindDrift, "indexed")); got != 1 {
		t.Fatalf("indexed metric for drift = %v", got)
	}
	if got := gaugeValue(t, reg, "triage_elasticsearch_up"); got != 1 {
		t.Fatalf("up = %v, want 1", got)
	}
}

func TestMetricsExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(testConfig("http://127.0.0.1:1"), reg, nil); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "triage_elasticsearch_documents_total"); n != 9 {
		t.Fatalf("documents_total has %d series at start, want 9 (3 kinds x 3 results)", n)
	}
	for _, name := range []string{"triage_elasticsearch_buffer_documents", "triage_elasticsearch_up"} {
		if n := testutil.CollectAndCount(reg, name); n != 1 {
			t.Fatalf("%s: %d series", name, n)
		}
	}
	// A second sink on the same registry is refused, with context.
	if _, err := New(testConfig("http://127.0.0.1:1"), reg, nil); err == nil || !strings.Contains(err.Error(), "register elasticsearch metrics") {
		t.Fatalf("second New on one registry: %v", err)
	}
}

func TestSinkRetriesBulkFailures(t *testing.T) {
	es := newFakeES(t)
	es.bulkStatus = func(n int) int {
		if n < 2 {
			return 503
		}
		return 0
	}
	s, err := New(testConfig(es.URL), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.Index(KindPredictions, time.Time{}, map[string]any{"i": i})
	}
	runSink(t, s)
	waitFor(t, 5*time.Second, "5 documents indexed", func() bool { return s.Stats().Indexed == 5 })
	st := s.Stats()
	docs, _, bulks := es.snapshot()
	if st.Failed != 0 || st.Dropped != 0 || len(docs) != 5 || bulks < 3 {
		t.Fatalf("stats %+v, %d docs stored after %d bulk requests; want 5 stored, none failed, >= 3 requests", st, len(docs), bulks)
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	for id, n := range es.attempts {
		if n != 1 { // the 503s were whole requests: the fake parsed no item of them
			t.Fatalf("document %s parsed %d times", id, n)
		}
	}
}

func TestSinkRetriesTemplateFailures(t *testing.T) {
	es := newFakeES(t)
	var calls int
	es.templateStatus = func(int) int {
		calls++
		if calls <= 3 {
			return 503
		}
		return 200
	}
	s, err := New(testConfig(es.URL), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Index(KindDrift, time.Time{}, map[string]any{"x": 1})
	runSink(t, s)
	waitFor(t, 5*time.Second, "indexed after template retries", func() bool { return s.Stats().Indexed == 1 })
	if _, templates, _ := es.snapshot(); len(templates) != 3 {
		t.Fatalf("templates: %v", templates)
	}
}

func TestSinkItemFailures(t *testing.T) {
	es := newFakeES(t)
	es.itemStatus = func(_ string, attempt int, body []byte) int {
		switch {
		case strings.Contains(string(body), `"bad"`):
			return 400 // a mapping error: final
		case attempt == 1:
			return 429 // busy: retried
		}
		return 0
	}
	reg := prometheus.NewRegistry()
	s, err := New(testConfig(es.URL), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		s.Index(KindDrift, time.Time{}, map[string]any{"i": i})
	}
	s.Index(KindDrift, time.Time{}, map[string]any{"bad": true})
	runSink(t, s)
	waitFor(t, 5*time.Second, "4 indexed, 1 failed", func() bool {
		st := s.Stats()
		return st.Indexed == 4 && st.Failed == 1
	})
	if got := testutil.ToFloat64(s.docs.WithLabelValues(KindDrift, "failed")); got != 1 {
		t.Fatalf("failed metric = %v", got)
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	for id, n := range es.attempts {
		_, stored := es.docs[id]
		if (stored && n != 2) || (!stored && n != 1) {
			t.Fatalf("document %s sent %d times (stored %v): want 429 retried once, 400 never", id, n, stored)
		}
	}
}

func TestSinkGivesUpAfterMaxAttempts(t *testing.T) {
	es := newFakeES(t)
	es.bulkStatus = func(int) int { return 502 }
	cfg := testConfig(es.URL)
	cfg.MaxAttempts = 3
	s, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Index(KindLogs, time.Time{}, map[string]any{"message": "x"})
	runSink(t, s)
	waitFor(t, 5*time.Second, "the document to fail", func() bool { return s.Stats().Failed == 1 })
	if _, _, bulks := es.snapshot(); bulks != 3 {
		t.Fatalf("%d bulk requests, want 3 (MaxAttempts)", bulks)
	}
}

func TestIndexNeverBlocksAndDropsWhenFull(t *testing.T) {
	es := newFakeES(t)
	es.templateStatus = func(int) int { return 503 } // down for good
	es.bulkStatus = func(int) int { return 503 }
	cfg := testConfig(es.URL)
	cfg.BufferDocs = 50
	reg := prometheus.NewRegistry()
	s, err := New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, s)
	waitFor(t, 5*time.Second, "the sink to see Elasticsearch down", func() bool { return s.upState.Load() == 2 })
	took := make([]time.Duration, 0, 500)
	for i := range 500 {
		start := time.Now()
		s.Index(KindPredictions, time.Time{}, map[string]any{"i": i, "text": strings.Repeat("x", 100)})
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	st := s.Stats()
	// Samples fill four fifths of the buffer (the rest is kept for drift
	// windows and logs).
	if st.Dropped != 460 || st.Buffered != 40 || st.Indexed != 0 {
		t.Fatalf("stats %+v: want 460 of 500 dropped, 40 buffered, with a buffer of 50 and Elasticsearch down", st)
	}
	if got := testutil.ToFloat64(s.docs.WithLabelValues(KindPredictions, "dropped")); uint64(got) != st.Dropped {
		t.Fatalf("dropped metric %v != Stats %d", got, st.Dropped)
	}
	if b := gaugeValue(t, reg, "triage_elasticsearch_buffer_documents"); b != 40 {
		t.Fatalf("buffer gauge = %v, want 40", b)
	}
	// A blocked call would take a request's time (seconds); a busy machine
	// can stretch one call by its scheduling, not most of them.
	p99, slowest := took[len(took)*99/100], took[len(took)-1]
	if p99 >= time.Millisecond || slowest > 50*time.Millisecond {
		t.Fatalf("Index calls: p99 %v, slowest %v", p99, slowest)
	}
	t.Logf("500 Index calls with Elasticsearch down: p99 %v, slowest %v", p99, slowest)
}

func TestSinkFlushesOnShutdown(t *testing.T) {
	es := newFakeES(t)
	cfg := testConfig(es.URL)
	cfg.FlushInterval = time.Hour // only the shutdown flush sends
	s, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSink(t, s)
	waitFor(t, 5*time.Second, "templates", func() bool { _, ts, _ := es.snapshot(); return len(ts) == 3 })
	for i := range 20 {
		s.Index(KindDrift, time.Time{}, map[string]any{"i": i})
	}
	waitFor(t, 5*time.Second, "the buffer to drain into the indexer", func() bool { return s.Stats().Buffered == 0 })
	stop()
	if st := s.Stats(); st.Indexed != 20 {
		t.Fatalf("after shutdown: %+v, want 20 indexed", st)
	}
	s.Index(KindDrift, time.Time{}, map[string]any{"late": true})
	if st := s.Stats(); st.Dropped != 1 {
		t.Fatalf("Index after Run returned: %+v, want it dropped", st)
	}
}

func TestSinkShutdownWhileDownIsBounded(t *testing.T) {
	es := newFakeES(t)
	es.delay = 5 * time.Second // hangs: the shutdown deadline must cut it
	cfg := testConfig(es.URL)
	cfg.ShutdownTimeout = 300 * time.Millisecond
	s, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSink(t, s)
	for i := range 30 {
		s.Index(KindDrift, time.Time{}, map[string]any{"i": i})
	}
	waitFor(t, 5*time.Second, "a bulk request in flight", func() bool { return s.pending.Load() > 0 })
	start := time.Now()
	stop()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Run took %v to return with Elasticsearch hanging", took)
	}
	st := s.Stats()
	if st.Indexed+st.Failed+st.Dropped != 30 || st.Buffered != 0 {
		t.Fatalf("stats %+v: every one of 30 documents must be accounted for", st)
	}
}

func TestSinkUnknownKindAndBadDocument(t *testing.T) {
	s, err := New(testConfig("http://127.0.0.1:1"), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Index("metrics", time.Time{}, map[string]any{})
	s.Index(KindDrift, time.Time{}, map[string]any{"psi": math.NaN()})
	if st := s.Stats(); st.Dropped != 1 || st.Failed != 1 || st.Buffered != 0 {
		t.Fatalf("stats %+v: want the unknown kind dropped and the NaN document failed", st)
	}
	var nilSink *Sink
	nilSink.Index(KindDrift, time.Time{}, 1) // no panic
	if nilSink.Stats() != (Stats{}) {
		t.Fatal("nil sink has stats")
	}
}

func TestSinkRecoversAfterOutage(t *testing.T) {
	es := newFakeES(t)
	var down sync.Mutex
	isDown := true
	es.bulkStatus = func(int) int {
		down.Lock()
		defer down.Unlock()
		if isDown {
			return 503
		}
		return 0
	}
	cfg := testConfig(es.URL)
	cfg.MaxAttempts = 1000 // the outage outlasts any small number
	reg := prometheus.NewRegistry()
	s, err := New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, s)
	for i := range 10 {
		s.Index(KindDrift, time.Time{}, map[string]any{"i": i})
	}
	waitFor(t, 5*time.Second, "up = 0", func() bool { return gaugeValue(t, reg, "triage_elasticsearch_up") == 0 && s.upState.Load() == 2 })
	down.Lock()
	isDown = false
	down.Unlock()
	waitFor(t, 5*time.Second, "10 indexed after recovery", func() bool { return s.Stats().Indexed == 10 })
	if gaugeValue(t, reg, "triage_elasticsearch_up") != 1 {
		t.Fatal("up gauge not 1 after recovery")
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// The log record the sink writes about its own failures must not come back
// to it through a LogHandler (a failing Elasticsearch would feed itself).
func TestSinkOwnLogsAreNotShipped(t *testing.T) {
	var out strings.Builder
	var mu sync.Mutex
	s, err := New(Config{URLs: []string{"http://127.0.0.1:1"}, BufferDocs: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What a process does: its one logger, shipping to this sink, is also
	// the sink's.
	s.log = slog.New(NewLogHandler(slog.NewJSONHandler(lockedWriter{&mu, &out}, nil), s, slog.LevelInfo))
	s.Index(KindDrift, time.Time{}, 1) // fills the buffer
	s.Index(KindDrift, time.Time{}, 2) // dropped: the sink logs a warning
	mu.Lock()
	logged := out.String()
	mu.Unlock()
	if !strings.Contains(logged, "buffer full") {
		t.Fatalf("no warning on stderr: %q", logged)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Buffered != 1 {
		t.Fatalf("stats %+v: the warning was shipped (or counted) as a log document", st)
	}
	if n := s.counts[resDropped][logsKind].Load(); n != 0 {
		t.Fatalf("%d log documents dropped: the sink's own warning reached it", n)
	}
}

// lockedWriter serialises writes to w (a buffer read by the test).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// jsonMap decodes one JSON object.
func jsonMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// A flood of prediction samples leaves room for drift windows and logs.
func TestSamplesLeaveRoomForDriftAndLogs(t *testing.T) {
	s, err := New(Config{URLs: []string{"http://127.0.0.1:1"}, BufferDocs: 10}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		s.Index(KindPredictions, time.Time{}, i)
	}
	if st := s.Stats(); st.Buffered != 8 || st.Dropped != 42 {
		t.Fatalf("after 50 samples into a buffer of 10: %+v, want 8 buffered (four fifths) and 42 dropped", st)
	}
	s.Index(KindDrift, time.Time{}, "window")
	s.Index(KindLogs, time.Time{}, "line")
	if st := s.Stats(); st.Buffered != 10 || st.Dropped != 42 {
		t.Fatalf("a drift window and a log line did not find room: %+v", st)
	}
	s.Index(KindDrift, time.Time{}, "one too many")
	if st := s.Stats(); st.Buffered != 10 || st.Dropped != 43 {
		t.Fatalf("a full buffer still took a document: %+v", st)
	}
}
