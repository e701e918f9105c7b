package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/scoring"
)

// fakeModel is a Model without ONNX Runtime: it scores labels by keyword and
// records every PredictInputs call's batch size.
type fakeModel struct {
	name, version string
	labels        []string
	fz            *featurizer.Featurizer
	delay         time.Duration
	gate          chan struct{} // when set, PredictInputs waits for it
	entered       chan struct{} // when set, signalled as PredictInputs starts
	err           error

	mu      sync.Mutex
	batches []int
	closed  atomic.Bool
}

var fakeLabels = []string{"billing", "shipping", "account"}

func newFakeModel(t testing.TB, name, version string) *fakeModel {
	t.Helper()
	ext, err := featurizer.NewExtractor(featurizer.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	vocab, err := ext.Fit([]string{"invoice refund charge", "parcel delivery courier", "password login locked"})
	if err != nil {
		t.Fatal(err)
	}
	fz, err := featurizer.New(featurizer.DefaultConfig(), vocab)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeModel{name: name, version: version, labels: fakeLabels, fz: fz}
}

func (m *fakeModel) PredictInputs(ctx context.Context, vs []inference.Input) ([]inference.Prediction, error) {
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.gate != nil {
		<-m.gate
	}
	if m.closed.Load() {
		return nil, errors.New("fake model used after Close")
	}
	m.mu.Lock()
	m.batches = append(m.batches, len(vs))
	m.mu.Unlock()
	if m.delay > 0 {
		time.Sleep(m.delay)
	}
	if m.err != nil {
		return nil, m.err
	}
	out := make([]inference.Prediction, len(vs))
	for i, v := range vs {
		// Deterministic: the label depends on the number of features.
		top := len(v.Features.IDs) % len(m.labels)
		scores := []inference.Score{{Label: m.labels[top], Score: 0.7}, {Label: m.labels[(top+1)%3], Score: 0.2}, {Label: m.labels[(top+2)%3], Score: 0.1}}
		out[i] = inference.Prediction{Label: scores[0].Label, Confidence: 0.7, Scores: scores, Model: m.Ref(), Truncated: v.Truncated}
	}
	return out, nil
}

func (m *fakeModel) Transform(text string) inference.Input {
	v := m.fz.Transform(text)
	return inference.Input{Features: v, Truncated: v.Truncated}
}

func (m *fakeModel) Manifest() bundle.Manifest {
	return bundle.Manifest{Name: m.name, Version: m.version, Labels: m.labels, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		HyperParams: map[string]any{"loss": "logistic", "learning_rate": 0.1, "l2": 0.0, "epochs": 4},
		Metrics: bundle.Metrics{Validation: scoring.Report{N: 30, Accuracy: 0.9, MacroF1: 0.89,
			PerClass: map[string]scoring.ClassMetrics{"billing": {Precision: 1, Recall: 0.8, F1: 0.89, Support: 10}}},
			TrainAcc: 0.99, Search: []bundle.Trial{{Params: map[string]any{"loss": "logistic"}, BestEpoch: 4, ValAccuracy: 0.9, ValMacroF1: 0.89}}},
		Training: bundle.Training{DataPath: "/secret/server/path/train.csv", DataSHA256: "abc", TextColumn: "text", LabelColumn: "label", Rows: 300}}
}

func (m *fakeModel) Ref() inference.ModelRef {
	return inference.ModelRef{Name: m.name, Version: m.version}
}

func (m *fakeModel) Close() error {
	m.closed.Store(true)
	return nil
}

func (m *fakeModel) batchSizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.batches...)
}

// testKeys are the keys every test server accepts, by name.
type testKeys map[string]string

// standardKeys: one key per scope, an admin key, and a tightly limited key.
func standardKeys(t testing.TB) ([]APIKey, testKeys) {
	t.Helper()
	secrets := testKeys{}
	var keys []APIKey
	for _, k := range []struct {
		name   string
		scopes []string
		rate   float64
		burst  int
	}{
		{"admin", []string{ScopeAdmin}, 0, 0},
		{"predictor", []string{ScopePredict}, 0, 0},
		{"feeder", []string{ScopeFeedback}, 0, 0},
		{"trainer", []string{ScopeTrain}, 0, 0},
		{"limited", []string{ScopePredict}, 0.001, 3},
	} {
		secret, key, err := NewKey(k.name, k.scopes, k.rate, k.burst)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
		secrets[k.name] = secret
	}
	return keys, secrets
}

type testServer struct {
	*Server
	keys testKeys
	reg  *prometheus.Registry
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestServer builds a gateway with the standard keys; edit adjusts the
// config first.
func newTestServer(t testing.TB, models map[string]Model, edit func(*Config)) *testServer {
	t.Helper()
	keys, secrets := standardKeys(t)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	cfg := Config{Addr: "127.0.0.1:0", Models: models, Keys: keys, Registerer: reg, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testServer{Server: s, keys: secrets, reg: reg, logs: logs}
}

// call sends a request through app.Test and returns status, headers and body.
func (ts *testServer) call(t testing.TB, method, path, key string, body any) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		r, ct = strings.NewReader(b), "application/json"
	case []byte:
		r, ct = bytes.NewReader(b), "application/json"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r, ct = bytes.NewReader(raw), "application/json"
	}
	req := httptest.NewRequest(method, path, r)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+ts.keys[key])
	}
	return ts.do(t, req)
}

func (ts *testServer) do(t testing.TB, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := ts.App().Test(req, 30_000)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// errBody decodes the error envelope, failing the test if it is not one.
func errBody(t testing.TB, b []byte) apiError {
	t.Helper()
	var env struct {
		Error *struct {
			Code    string   `json:"code"`
			Message string   `json:"message"`
			Field   string   `json:"field"`
			Reasons []string `json:"reasons"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil || env.Error == nil || env.Error.Code == "" || env.Error.Message == "" {
		t.Fatalf("not an error envelope (%v): %s", err, b)
	}
	return apiError{Code: env.Error.Code, Message: env.Error.Message, Field: env.Error.Field, Reasons: env.Error.Reasons}
}

func decodeJSON[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T: %v: %s", v, err, b)
	}
	return v
}

// histogram returns the named histogram's sample count and sum for labels.
func histogram(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	for _, m := range gather(t, reg, name) {
		if matchLabels(m, labels) {
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
	}
	return 0, 0
}

func counter(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	var total float64
	for _, m := range gather(t, reg, name) {
		if matchLabels(m, labels) {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func gather(t testing.TB, reg prometheus.Gatherer, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// syntheticCSV writes a labelled corpus (as the trainer's tests do): each
// label has its own words plus shared noise, so a working trainer separates
// them. Different seeds give different files.
func syntheticCSV(t testing.TB, dir, name string, seed uint64) string {
	t.Helper()
	topics := map[string][]string{
		"billing":  {"invoice", "charge", "refund", "payment", "bill", "overcharged"},
		"shipping": {"parcel", "delivery", "courier", "tracking", "shipped", "arrive"},
		"account":  {"password", "login", "locked", "username", "reset", "signin"},
	}
	noise := []string{"please", "help", "my", "the", "is", "not", "today", "why", "hello"}
	rng := rand.New(rand.NewPCG(seed, 2))
	var b strings.Builder
	b.WriteString("text,label\n")
	for i := range 300 {
		label := fakeLabels[i%3]
		var words []string
		for range 6 {
			if rng.IntN(2) == 0 {
				words = append(words, topics[label][rng.IntN(6)])
			} else {
				words = append(words, noise[rng.IntN(len(noise))])
			}
		}
		fmt.Fprintf(&b, "\"%s\",%s\n", strings.Join(words, " "), label)
	}
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
