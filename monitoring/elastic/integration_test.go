//go:build elasticsearch

// Tests against a real Elasticsearch 7.17 node started by
// scripts/elasticsearch-local (Java 17 and, on first run, Maven):
//
//	go test -tags elasticsearch ./monitoring/elastic/
//
// One node serves the whole run; the outage test stops and restarts it.
package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/triage-ml/triage/internal/estest"
)

var (
	esURL  string // http://127.0.0.1:P
	esDir  string // the node's state: restarting keeps data and port
	esRoot string // repository root
)

func TestMain(m *testing.M) {
	os.Exit(withNode(m))
}

func withNode(m *testing.M) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	esRoot = root
	esDir, err = os.MkdirTemp("", "triage-es-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(esDir)
	start := time.Now()
	esURL, err = esLocal("start", "--dir", esDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "elasticsearch %s ready in %v\n", esURL, time.Since(start).Round(time.Millisecond))
	defer func() {
		if _, err := esLocal("stop", "--dir", esDir, "--clean"); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	return m.Run()
}

// repoRoot walks up from the test's directory to go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test directory")
		}
		dir = parent
	}
}

// esLocal runs scripts/elasticsearch-local and returns its last stdout line.
func esLocal(args ...string) (string, error) { return estest.Run(esRoot, args...) }

// esDo sends one request to the test node and decodes its JSON answer.
func esDo(t *testing.T, method, path, body string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, esURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s: %s", method, path, res.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func esCount(t *testing.T, index, query string) int {
	t.Helper()
	esDo(t, http.MethodPost, "/"+index+"/_refresh", "", nil)
	var res struct{ Count int }
	body := ""
	if query != "" {
		body = `{"query":` + query + `}`
	}
	esDo(t, http.MethodPost, "/"+index+"/_count", body, &res)
	return res.Count
}

// startSink runs a sink against the test node; stop cancels and waits.
func startSink(t *testing.T, cfg Config, reg *prometheus.Registry) (*Sink, func()) {
	t.Helper()
	cfg.URLs = []string{esURL}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s, err := New(cfg, reg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func fastConfig() Config {
	return Config{FlushInterval: 100 * time.Millisecond, RetryInitial: 100 * time.Millisecond, RetryMax: time.Second}
}

func TestTemplatesInstalled(t *testing.T) {
	s, _ := startSink(t, fastConfig(), nil)
	waitFor(t, 30*time.Second, "the sink to connect", func() bool { return s.upState.Load() == 1 })
	var res struct {
		IndexTemplates []struct {
			Name          string
			IndexTemplate struct {
				IndexPatterns []string `json:"index_patterns"`
				Template      json.RawMessage
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	esDo(t, http.MethodGet, "/_index_template/triage-*", "", &res)
	var names []string
	for _, it := range res.IndexTemplates {
		names = append(names, it.Name)
		want, _ := MappedFields(Templates()[it.Name])
		// What Elasticsearch stored maps the same fields the same way.
		stored, err := MappedFields([]byte(`{"template":` + string(it.IndexTemplate.Template) + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(stored, want) {
			t.Errorf("%s: stored mapping %v, want %v", it.Name, stored, want)
		}
		if !slices.Equal(it.IndexTemplate.IndexPatterns, []string{it.Name + "-*"}) {
			t.Errorf("%s: index_patterns %v", it.Name, it.IndexTemplate.IndexPatterns)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"triage-drift", "triage-logs", "triage-predictions"}) {
		t.Fatalf("installed templates: %v", names)
	}
}

func TestDriftAndPredictionDocumentsIndexed(t *testing.T) {
	s, _ := startSink(t, fastConfig(), nil)
	day := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var drift, prediction map[string]any
	if err := json.Unmarshal([]byte(`{"@timestamp": "2025-01-02T03:04:05Z", "model": {"name": "support", "version": "v3"}, "topic": "triage.support-queries",
	 "window": {"start": "2025-01-02T03:00:00Z", "end": "2025-01-02T03:04:05Z", "count": 500, "kind": "count"},
	 "label_psi": 0.03, "label_js": 0.01,
	 "label_shares": [{"label": "card_arrival", "share": 0.02, "reference": 0.013}, {"label": "Refund_not_showing_up", "share": 0.5, "reference": 0.4}],
	 "confidence": {"mean": 0.81, "p10": 0.4, "p50": 0.9, "p90": 0.99, "low_share": 0.12, "margin_mean": 0.6},
	 "estimated_accuracy": 0.91, "estimated_accuracy_cbpe": 0.9, "true_accuracy": 0.92, "labelled": 120,
	 "input": {"tokens_mean": 12.5, "oov_rate": 0.03}, "embedding": {"centroid_distance": 0.31}, "domain_auc": 0.55,
	 "drift": true, "alerts": ["label_psi", "estimated_accuracy"],
	 "thresholds": [{"statistic": "label_psi", "direction": "above", "value": 0.1}]}`), &drift); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"@timestamp": "2025-01-02T03:04:05Z", "event": {"id": "q1"}, "model": {"name": "support", "version": "v3"},
	 "topic": "triage.support-queries", "label": "card_arrival", "confidence": 0.93, "calibrated_confidence": 0.9, "margin": 0.8,
	 "latency_ms": 3.2, "truncated": false, "input": {"tokens": 14, "oov_rate": 0.0}}`), &prediction); err != nil {
		t.Fatal(err)
	}
	s.Index(KindDrift, day, drift)
	for range 3 {
		s.Index(KindPredictions, day, prediction)
	}
	waitFor(t, 30*time.Second, "4 documents indexed", func() bool { return s.Stats().Indexed == 4 })

	for kind, want := range map[string]int{KindDrift: 1, KindPredictions: 3} {
		index := IndexName(kind, day)
		if n := esCount(t, index, ""); n != want {
			t.Errorf("%s holds %d documents, want %d", index, n, want)
		}
		// The index's mapping is the template's, field for field: nothing
		// in the contract documents was left to dynamic mapping.
		var m map[string]struct {
			Mappings json.RawMessage
		}
		esDo(t, http.MethodGet, "/"+index+"/_mapping", "", &m)
		got, err := MappedFields([]byte(`{"template":{"mappings":` + string(m[index].Mappings) + `}}`))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := MappedFields(Templates()["triage-"+kind])
		if !maps.Equal(got, want) {
			t.Errorf("%s mapping differs from its template:\n got  %v\n want %v", index, got, want)
		}
	}
	// Aggregations the dashboards use work on the mapped types.
	var agg struct {
		Aggregations struct {
			Models struct{ Buckets []struct{ Key string } }
			PSI    struct{ Value float64 }
		}
	}
	esDo(t, http.MethodPost, "/triage-drift-*/_search", `{"size":0,"query":{"term":{"drift":true}},
		"aggs":{"models":{"terms":{"field":"model.name"}},"psi":{"max":{"field":"label_psi"}}}}`, &agg)
	if len(agg.Aggregations.Models.Buckets) != 1 || agg.Aggregations.Models.Buckets[0].Key != "support" || agg.Aggregations.PSI.Value != 0.03 {
		t.Fatalf("aggregation over the drift index: %+v", agg)
	}
	if n := esCount(t, "triage-drift-*", `{"term":{"label_shares.label":"card_arrival"}}`); n != 1 {
		t.Fatalf("label_shares.label term query: %d hits", n)
	}
}

func TestLogHandlerShipsECSDocuments(t *testing.T) {
	cfg := fastConfig()
	cfg.Service = "triage-it"
	s, _ := startSink(t, cfg, nil)
	var stderr bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(NewLogHandler(NewECSJSONHandler(lockedWriter{&mu, &stderr}, nil, "triage-it"), s, slog.LevelWarn)).
		With("triage.role", "consumer")
	reason := fmt.Sprintf("bad-json-%d", time.Now().UnixNano())
	logger.Info("not shipped", "event.reason", reason)
	logger.Error("dead letter", "event.action", "dead-letter", "event.reason", reason,
		"err", errors.New("unexpected EOF"), "model", "support", "model.version", "v3", "topic", "triage.support-queries")
	// One key with two types across records: runtime fields take both.
	logger.Warn("slow batch", "event.reason", reason, "size", 3)
	logger.Warn("slow batch", "event.reason", reason, "size", "three")
	// Groups become objects.
	logger.With("event.reason", reason).WithGroup("batch").Warn("slow batch", "size", 4, "topic", "t")
	waitFor(t, 30*time.Second, "4 log documents", func() bool { return s.Stats().Indexed == 4 })
	if st := s.Stats(); st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}

	var res struct {
		Hits struct {
			Hits []struct {
				Index  string         `json:"_index"`
				Source map[string]any `json:"_source"`
			}
		}
	}
	esDo(t, http.MethodPost, "/triage-logs-*/_refresh", "", nil)
	esDo(t, http.MethodPost, "/triage-logs-*/_search", `{"query":{"bool":{"filter":[
		{"term":{"event.action":"dead-letter"}},{"term":{"event.reason":"`+reason+`"}},{"term":{"log.level":"error"}},
		{"term":{"triage.role":"consumer"}},{"term":{"service.name":"triage-it"}},{"term":{"model.name":"support"}},
		{"match":{"error.message":"unexpected"}},{"term":{"message.keyword":"dead letter"}}]}}}`, &res)
	if len(res.Hits.Hits) != 1 {
		t.Fatalf("%d hits for the dead letter log record, want 1", len(res.Hits.Hits))
	}
	hit := res.Hits.Hits[0]
	if want := IndexName(KindLogs, time.Now()); hit.Index != want {
		t.Errorf("log document in %s, want %s", hit.Index, want)
	}
	// The document is the stderr line.
	mu.Lock()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	mu.Unlock()
	var line map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &line); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(hit.Source, line) {
		t.Errorf("shipped document %v differs from the stderr line %v", hit.Source, line)
	}
	if n := esCount(t, "triage-logs-*", `{"term":{"event.reason":"`+reason+`"}}`); n != 4 {
		t.Errorf("%d log documents for this test, want 4 (the info record is below the shipping level)", n)
	}
	if n := esCount(t, "triage-logs-*", `{"bool":{"filter":[{"term":{"event.reason":"`+reason+`"}},{"term":{"batch.size":4}}]}}`); n != 1 {
		t.Errorf("grouped attribute batch.size: %d hits, want 1", n)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// Elasticsearch stops while documents keep coming at a steady rate: Index
// never blocks, the buffer fills and the rest is dropped and counted; the
// node restarts (same directory, same port) and the same sink, never
// restarted, indexes again.
func TestOutageAndRecovery(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.BufferDocs = 300
	cfg.MaxAttempts = 10
	s, stopSink := startSink(t, cfg, reg)
	day := time.Date(2025, 2, 3, 0, 0, 0, 0, time.UTC)
	index := IndexName(KindPredictions, day)

	var (
		mu        sync.Mutex
		durations []time.Duration
		produced  int
	)
	stopProducing := make(chan struct{})
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		tick := time.NewTicker(5 * time.Millisecond) // 200 documents/s
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stopProducing:
				return
			case <-tick.C:
			}
			doc := map[string]any{"@timestamp": time.Now().UTC(), "event": map[string]any{"id": fmt.Sprint(seq)},
				"model": map[string]any{"name": "support", "version": "v1"}, "label": "card_arrival", "confidence": 0.9}
			start := time.Now()
			s.Index(KindPredictions, day, doc)
			d := time.Since(start)
			mu.Lock()
			durations = append(durations, d)
			produced++
			mu.Unlock()
		}
	}()
	up := func() float64 { return gaugeValue(t, reg, "triage_elasticsearch_up") }

	waitFor(t, 30*time.Second, "100 documents indexed", func() bool { return s.Stats().Indexed >= 100 })
	phase := time.Now()
	if _, err := esLocal("stop", "--dir", esDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("node stopped in %v; indexed so far %+v", time.Since(phase).Round(time.Millisecond), s.Stats())
	waitFor(t, 30*time.Second, "up = 0", func() bool { return up() == 0 })
	waitFor(t, 30*time.Second, "documents dropped with the buffer full", func() bool { return s.Stats().Dropped > 50 })
	atOutage := s.Stats()
	// The buffer is full; one failed batch waiting to be resent comes on top,
	// and a batch holds at most what the buffer held while a request hung.
	// Prediction samples fill four fifths of the buffer (sampleRoom).
	if room := sampleRoom(cfg.BufferDocs); atOutage.Buffered < room || atOutage.Buffered > room+cfg.BufferDocs {
		t.Errorf("buffered %d during the outage, want the samples' part of the buffer (%d) full, plus at most one failed batch", atOutage.Buffered, room)
	}
	if got := testutil.ToFloat64(s.docs.WithLabelValues(KindPredictions, "dropped")); got == 0 {
		t.Errorf("dropped metric is 0 with %d dropped", atOutage.Dropped)
	}

	phase = time.Now()
	url, err := esLocal("start", "--dir", esDir)
	if err != nil {
		t.Fatal(err)
	}
	if url != esURL {
		t.Fatalf("restarted node at %s, was %s: clients could not reconnect", url, esURL)
	}
	t.Logf("node restarted in %v; %+v", time.Since(phase).Round(time.Millisecond), s.Stats())
	waitFor(t, 60*time.Second, "up = 1 and the buffer drained", func() bool {
		st := s.Stats()
		return up() == 1 && st.Indexed > atOutage.Indexed+uint64(cfg.BufferDocs) && st.Buffered < 50
	})
	t.Logf("recovered %v after the restart: %+v", time.Since(phase).Round(time.Millisecond), s.Stats())
	close(stopProducing)
	<-producerDone
	waitFor(t, 30*time.Second, "everything sent", func() bool { return s.Stats().Buffered == 0 && s.pending.Load() == 0 })
	stopSink()

	st := s.Stats()
	mu.Lock()
	defer mu.Unlock()
	if total := st.Indexed + st.Failed + st.Dropped; total != uint64(produced) {
		t.Errorf("indexed+failed+dropped = %d, produced %d: %+v", total, produced, st)
	}
	if st.Failed != 0 {
		t.Errorf("%d documents failed: the outage should only buffer and drop", st.Failed)
	}
	if got := testutil.ToFloat64(s.docs.WithLabelValues(KindPredictions, "dropped")); uint64(got) != st.Dropped {
		t.Errorf("dropped metric %v, Stats %d", got, st.Dropped)
	}
	// Resent batches carry their ids: no duplicates.
	if n := esCount(t, index, ""); uint64(n) != st.Indexed {
		t.Errorf("%s holds %d documents, the sink indexed %d", index, n, st.Indexed)
	}
	slices.Sort(durations)
	p99 := durations[len(durations)*99/100]
	slowest := durations[len(durations)-1]
	over := len(durations) - sortSearch(durations, time.Millisecond)
	t.Logf("%d Index calls: p50 %v, p99 %v, max %v, %d over 1ms; %+v",
		len(durations), durations[len(durations)/2], p99, slowest, over, st)
	if p99 >= time.Millisecond || slowest > 100*time.Millisecond {
		t.Errorf("Index blocked: p99 %v, max %v (want p99 < 1ms and no call near a request's time)", p99, slowest)
	}
}

// sortSearch returns the first index in sorted ds with ds[i] > d.
func sortSearch(ds []time.Duration, d time.Duration) int {
	i, _ := slices.BinarySearchFunc(ds, d, func(a, b time.Duration) int {
		if a <= b {
			return -1
		}
		return 1
	})
	return i
}
