package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/review"

	"github.com/triage-ml/triage/inference"
)

func TestPredictSingleAndBatch(t *testing.T) {
	m := newFakeModel(t, "support", "v1")
	ts := newTestServer(t, map[string]Model{"support": m}, nil)

	code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"my invoice is wrong"}`)
	if code != 200 {
		t.Fatalf("single: %d %s", code, b)
	}
	resp := decodeJSON[PredictResponse](t, b)
	if len(resp.Predictions) != 1 {
		t.Fatalf("single: %d predictions", len(resp.Predictions))
	}
	p := resp.Predictions[0]
	if !slices.Contains(fakeLabels, p.Label) || p.Confidence != 0.7 || len(p.Scores) != 3 || p.Scores[0].Label != p.Label {
		t.Errorf("single prediction: %+v", p)
	}
	if p.Model != (inference.ModelRef{Name: "support", Version: "v1"}) {
		t.Errorf("model ref %+v", p.Model)
	}
	if resp.LatencyMS <= 0 {
		t.Errorf("latency_ms %v", resp.LatencyMS)
	}
	// The raw JSON has the documented keys.
	var raw map[string]any
	json.Unmarshal(b, &raw)
	if _, ok := raw["latency_ms"]; !ok {
		t.Errorf("no latency_ms in %s", b)
	}

	code, _, b = ts.call(t, "POST", "/v1/predict", "predictor", PredictRequest{Texts: []string{"a refund", "parcel late", "locked out"}, Model: "support"})
	if code != 200 {
		t.Fatalf("batch: %d %s", code, b)
	}
	if n := len(decodeJSON[PredictResponse](t, b).Predictions); n != 3 {
		t.Fatalf("batch: %d predictions, want 3", n)
	}

	code, _, b = ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"x","model":"nope"}`)
	if e := errBody(t, b); code != 404 || e.Code != codeNotFound || !strings.Contains(e.Message, "nope") {
		t.Errorf("unknown model: %d %+v", code, e)
	}
}

func TestPredictModelRequiredWhenSeveral(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1"), "reviews": newFakeModel(t, "reviews", "v1")}, nil)
	code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"hello"}`)
	if e := errBody(t, b); code != 400 || e.Field != "model" || !strings.Contains(e.Message, "reviews, support") {
		t.Errorf("no model with two loaded: %d %+v", code, e)
	}
	code, _, b = ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"hello","model":"reviews"}`)
	if code != 200 || decodeJSON[PredictResponse](t, b).Predictions[0].Model.Name != "reviews" {
		t.Errorf("model reviews: %d %s", code, b)
	}
}

func TestBadRequestNamesField(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	for _, tc := range []struct {
		body, field, msg string
	}{
		{`{"txt":"hello"}`, "txt", `unknown field "txt"`},
		{`{"text":"hi","extra":1}`, "extra", `unknown field "extra"`},
		{`{"text":5}`, "text", `expected a string, got a number`},
		{`{"texts":"one"}`, "texts", `expected an array of strings, got a string`},
		{`{"texts":[1,2]}`, "texts", `expected a string`},
		{`{"model":true,"text":"x"}`, "model", `expected a string, got a boolean`},
		{`{"text":"a","texts":["b"]}`, "texts", "not both"},
		{`{}`, "text", "required"},
		{`{"text": "x"`, "", "unexpected end"},
		{`{"text": "x"} {}`, "", "after the JSON object"},
		{`{text: "x"}`, "", "malformed JSON at byte"},
		{`[]`, "", "must be a JSON object"},
		{``, "", "empty"},
	} {
		code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", tc.body)
		e := errBody(t, b)
		if code != 400 || e.Code != codeInvalidRequest || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %d %+v; want 400 field %q message containing %q", tc.body, code, e, tc.field, tc.msg)
		}
	}
}

func TestUnprocessableTexts(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) {
		c.MaxTextBytes = 100
		c.MaxBatch = 4
	})
	long := strings.Repeat("x", 101)
	for _, tc := range []struct {
		body  any
		field string
		msg   string
	}{
		{`{"text":""}`, "text", "empty"},
		{`{"text":"  \n\t "}`, "text", "empty"},
		{PredictRequest{Text: &long}, "text", "101 bytes; the limit is 100"},
		{`{"texts":[]}`, "texts", "empty"},
		{PredictRequest{Texts: []string{"ok", ""}}, "texts[1]", "empty"},
		{PredictRequest{Texts: []string{"ok", "ok", long}}, "texts[2]", "limit is 100"},
		{PredictRequest{Texts: []string{"a", "b", "c", "d", "e"}}, "texts", "at most 4"},
	} {
		code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", tc.body)
		e := errBody(t, b)
		if code != 422 || e.Code != codeUnprocessable || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%v: %d %+v; want 422 field %q containing %q", tc.body, code, e, tc.field, tc.msg)
		}
	}
	// Exactly at the limits is fine.
	ok := strings.Repeat("y", 100)
	if code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", PredictRequest{Texts: []string{ok, ok, ok, ok}}); code != 200 {
		t.Errorf("at limits: %d %s", code, b)
	}
}

func TestBodyLimit(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) {
		c.BodyLimit = 1024
		c.UploadLimit = 2048
	})
	big := `{"text":"` + strings.Repeat("a", 2000) + `"}`
	code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", big)
	if e := errBody(t, b); code != 413 || e.Code != codeTooLarge || !strings.Contains(e.Message, "limit is 1024") {
		t.Errorf("over body limit: %d %+v", code, e)
	}
	code, _, b = ts.call(t, "POST", "/v1/feedback", "feeder", big)
	if code != 413 && code != 503 {
		t.Errorf("feedback over limit: %d %s", code, b)
	}
	// Over the HTTP server's own cap (upload limit + 1 MiB) the request is
	// refused before routing, still as JSON. app.Test reports the server's
	// error instead of the response, so this goes over TCP.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ts.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for !ts.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Announce a body over the cap; the server answers from the headers
	// alone (sending the body too races the server closing the connection).
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		ts.keys["predictor"], 3<<20)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if e := errBody(t, b); resp.StatusCode != 413 || e.Code != codeTooLarge {
		t.Errorf("over server cap: %d %+v", resp.StatusCode, e)
	}
}

// authCase is one route with a valid body for it.
type authCase struct {
	method, path, scope string
	body                string
}

func authCases() []authCase {
	return []authCase{
		{"POST", "/v1/predict", ScopePredict, `{"text":"refund please"}`},
		{"GET", "/v1/models", ScopePredict, ""},
		{"GET", "/v1/models/support", ScopePredict, ""},
		{"GET", "/v1/models/support/params", ScopePredict, ""},
		{"POST", "/v1/train", ScopeTrain, `{"data_path":"missing.csv","name":"x"}`},
		{"GET", "/v1/train/tj_nope", ScopeTrain, ""},
		{"POST", "/v1/feedback", ScopeFeedback, `{"id":"1","text":"t","label":"billing"}`},
		{"GET", "/metrics", ScopeAdmin, ""},
		{"GET", "/v1/review", ScopeFeedback, ""},
		{"GET", "/v1/drift", ScopePredict, ""},
		{"POST", "/v1/models/support/promote", ScopeAdmin, `{"version":"v1"}`},
		{"POST", "/v1/models/support/rollback", ScopeAdmin, ""},
	}
}

func TestAuthMatrix(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) {
		withJobs(t, c)
		c.Registry = &fakeModelRegistry{champion: "v1"}
		c.Review = review.New(0, nil)
		c.Drift = fakeDrift{}
		c.DataRoot = t.TempDir()
		c.Feedback = func(context.Context, FeedbackRecord) error { return nil }
	})
	cases := authCases()
	// The table covers every authenticated route the app registers.
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.method+" "+fiberPath(c.path)] = true
	}
	open := map[string]bool{"GET /": true, "GET /healthz": true, "GET /readyz": true, "GET /openapi.json": true}
	for _, r := range ts.App().GetRoutes(true) {
		if r.Method == "HEAD" {
			continue
		}
		k := r.Method + " " + r.Path
		if !covered[k] && !open[k] {
			t.Errorf("route %s is missing from the auth matrix", k)
		}
	}
	scopeKey := map[string]string{ScopePredict: "predictor", ScopeFeedback: "feeder", ScopeTrain: "trainer", ScopeAdmin: "admin"}
	for _, c := range cases {
		send := func(hdr map[string]string) (int, http.Header, []byte) {
			var req *http.Request
			if c.body != "" {
				req = httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
				req.Header.Set("Content-Type", "application/json")
			} else {
				req = httptest.NewRequest(c.method, c.path, nil)
			}
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			return ts.do(t, req)
		}
		name := c.method + " " + c.path
		// No key, an unknown key, a malformed header: 401 with a challenge.
		for label, hdr := range map[string]map[string]string{
			"no key":       nil,
			"unknown key":  {"Authorization": "Bearer trg_" + strings.Repeat("A", 43)},
			"unknown x":    {"X-API-Key": "trg_nope"},
			"basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
			"empty bearer": {"Authorization": "Bearer "},
		} {
			code, h, b := send(hdr)
			if e := errBody(t, b); code != 401 || e.Code != codeUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s, %s: %d %q %+v", name, label, code, h.Get("WWW-Authenticate"), e)
			}
		}
		// Every key without the scope: 403.
		for scope, key := range scopeKey {
			if scope == c.scope || key == "admin" {
				continue
			}
			code, _, b := send(map[string]string{"Authorization": "Bearer " + ts.keys[key]})
			if e := errBody(t, b); code != 403 || e.Code != codeForbidden || !strings.Contains(e.Message, c.scope) {
				t.Errorf("%s with %s key: %d %+v", name, key, code, e)
			}
		}
		// The scope's key (as Bearer and as X-API-Key) and admin get through.
		for _, hdr := range []map[string]string{
			{"Authorization": "Bearer " + ts.keys[scopeKey[c.scope]]},
			{"Authorization": "bearer " + ts.keys[scopeKey[c.scope]]},
			{"X-API-Key": ts.keys[scopeKey[c.scope]]},
			{"Authorization": "Bearer " + ts.keys["admin"]},
		} {
			if code, _, b := send(hdr); code == 401 || code == 403 || code == 429 || code >= 500 {
				t.Errorf("%s with %v: %d %s", name, hdr, code, b)
			}
		}
	}
	// Open routes need no key.
	for path := range open {
		if code, _, b := ts.call(t, "GET", strings.TrimPrefix(path, "GET "), "", nil); code != 200 {
			t.Errorf("%s without key: %d %s", path, code, b)
		}
	}
}

// fiberPath turns a concrete test path into its route pattern.
func fiberPath(p string) string {
	switch {
	case strings.HasPrefix(p, "/v1/models/") && strings.HasSuffix(p, "/params"):
		return "/v1/models/:name/params"
	case strings.HasPrefix(p, "/v1/models/") && strings.HasSuffix(p, "/promote"):
		return "/v1/models/:name/promote"
	case strings.HasPrefix(p, "/v1/models/") && strings.HasSuffix(p, "/rollback"):
		return "/v1/models/:name/rollback"
	case strings.HasPrefix(p, "/v1/models/"):
		return "/v1/models/:name"
	case strings.HasPrefix(p, "/v1/train/"):
		return "/v1/train/:id"
	}
	return p
}

func TestRateLimit(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	for i := range 3 { // burst 3
		if code, _, b := ts.call(t, "POST", "/v1/predict", "limited", `{"text":"hi"}`); code != 200 {
			t.Fatalf("request %d within burst: %d %s", i+1, code, b)
		}
	}
	code, h, b := ts.call(t, "POST", "/v1/predict", "limited", `{"text":"hi"}`)
	e := errBody(t, b)
	if code != 429 || e.Code != codeRateLimited {
		t.Fatalf("after burst: %d %+v", code, e)
	}
	// rate 0.001/s: the next token is 1000 s away.
	if ra := h.Get("Retry-After"); ra != "1000" {
		t.Errorf("Retry-After %q, want 1000", ra)
	}
	if n := counter(t, ts.reg, "triage_gateway_rate_limited_total", map[string]string{"key": "limited"}); n != 1 {
		t.Errorf("rate_limited_total{key=limited} = %v", n)
	}
	if n := counter(t, ts.reg, "triage_gateway_requests_total", map[string]string{"route": "/v1/predict", "code": "429"}); n != 1 {
		t.Errorf("requests_total{429} = %v", n)
	}
	// Other keys have their own buckets.
	if code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"hi"}`); code != 200 {
		t.Errorf("other key: %d %s", code, b)
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	keys, secrets := standardKeys(t)
	secret, k, err := NewKey("fast", []string{ScopePredict}, 2, 1) // 2/s: next token in 0.5 s
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, k)
	s, err := New(Config{Models: map[string]Model{"support": newFakeModel(t, "support", "v1")}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := &testServer{Server: s, keys: secrets}
	ts.keys["fast"] = secret
	ts.call(t, "POST", "/v1/predict", "fast", `{"text":"hi"}`)
	code, h, _ := ts.call(t, "POST", "/v1/predict", "fast", `{"text":"hi"}`)
	if code != 429 || h.Get("Retry-After") != "1" {
		t.Errorf("second request at 2/s burst 1: %d Retry-After %q, want 429 and 1", code, h.Get("Retry-After"))
	}
}

// TestDynamicBatching: 32 concurrent single-text requests are coalesced
// into fewer, larger inference calls (with a wait, and by default without
// one: then batches form while the model is busy); with batching off, each
// is its own.
func TestDynamicBatching(t *testing.T) {
	for _, tc := range []struct {
		on   bool
		wait time.Duration
	}{{true, 5 * time.Millisecond}, {true, 0}, {false, 0}} {
		on := tc.on
		t.Run(fmt.Sprintf("dynamic=%v/wait=%v", on, tc.wait), func(t *testing.T) {
			m := newFakeModel(t, "support", "v1")
			m.delay = 2 * time.Millisecond
			ts := newTestServer(t, map[string]Model{"support": m}, func(c *Config) {
				c.DisableDynamicBatching = !on
				c.BatchMaxWait = tc.wait
			})
			const n = 32
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan string, n)
			for i := range n {
				wg.Go(func() {
					<-start
					code, _, b := ts.call(t, "POST", "/v1/predict", "admin", fmt.Sprintf(`{"text":"refund number %d"}`, i))
					if code != 200 {
						errs <- fmt.Sprintf("%d %s", code, b)
						return
					}
					if p := decodeJSON[PredictResponse](t, b).Predictions; len(p) != 1 {
						errs <- fmt.Sprintf("%d predictions", len(p))
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			sizes := m.batchSizes()
			total, largest := 0, 0
			for _, s := range sizes {
				total += s
				largest = max(largest, s)
			}
			if total != n {
				t.Errorf("inference calls covered %d texts, want %d (%v)", total, n, sizes)
			}
			count, sum := histogram(t, ts.reg, "triage_gateway_batch_size", map[string]string{"model": "support"})
			if int(count) != len(sizes) || int(sum) != n {
				t.Errorf("batch_size histogram count %d sum %v; calls %v", count, sum, sizes)
			}
			t.Logf("dynamic=%v: %d inference calls for %d requests, largest batch %d", on, len(sizes), n, largest)
			if on && largest <= 1 {
				t.Errorf("dynamic batching on: largest batch %d, want > 1 (%v)", largest, sizes)
			}
			if !on && largest != 1 {
				t.Errorf("dynamic batching off: largest batch %d, want 1", largest)
			}
		})
	}
}

func TestBatcherRespectsMaxTexts(t *testing.T) {
	m := newFakeModel(t, "support", "v1")
	m.delay = time.Millisecond
	ts := newTestServer(t, map[string]Model{"support": m}, func(c *Config) {
		c.BatchMaxTexts = 8
		c.BatchMaxWait = 20 * time.Millisecond
	})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			code, _, b := ts.call(t, "POST", "/v1/predict", "admin", PredictRequest{Texts: []string{"a b", "c d", "e f"}})
			if code != 200 || len(decodeJSON[PredictResponse](t, b).Predictions) != 3 {
				t.Errorf("%d %s", code, b)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, s := range m.batchSizes() {
		total += s
		if s > 8 {
			t.Errorf("batch of %d texts exceeds BatchMaxTexts 8", s)
		}
	}
	if total != 30 {
		t.Errorf("%d texts predicted, want 30", total)
	}
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	for _, on := range []bool{true, false} {
		m := newFakeModel(t, "support", "v1")
		m.err = errors.New("ort: session at /srv/secret/model.onnx exploded")
		ts := newTestServer(t, map[string]Model{"support": m}, func(c *Config) { c.DisableDynamicBatching = !on })
		code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"x"}`)
		if code != 500 || string(b) != `{"error":{"code":"internal","message":"internal error"}}` {
			t.Errorf("dynamic=%v: %d %s", on, code, b)
		}
		if !strings.Contains(ts.logs.String(), "/srv/secret/model.onnx exploded") {
			t.Errorf("dynamic=%v: details not logged: %s", on, ts.logs.String())
		}
	}
}

func TestModelsEndpoints(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v7"), "reviews": newFakeModel(t, "reviews", "v2")}, nil)
	code, _, b := ts.call(t, "GET", "/v1/models", "predictor", nil)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	list := decodeJSON[ModelList](t, b)
	if len(list.Models) != 2 || list.Models[0].Name != "reviews" || list.Models[1].Name != "support" || list.Models[1].Version != "v7" {
		t.Fatalf("models: %+v", list.Models)
	}
	if got := list.Models[1]; !slices.Equal(got.Labels, fakeLabels) || got.Metrics.Validation.Accuracy != 0.9 ||
		got.Metrics.Validation.PerClass != nil || got.Training.Rows != 300 || got.Training.DataFile != "train.csv" {
		t.Errorf("model info: %+v", got)
	}
	if strings.Contains(string(b), "/secret/server/path") {
		t.Errorf("server path leaked: %s", b)
	}

	code, _, b = ts.call(t, "GET", "/v1/models/support", "predictor", nil)
	info := decodeJSON[ModelInfo](t, b)
	if code != 200 || info.Metrics.Validation.PerClass["billing"].Support != 10 {
		t.Errorf("one model: %d %s", code, b)
	}
	code, _, b = ts.call(t, "GET", "/v1/models/support/params", "predictor", nil)
	params := decodeJSON[ModelParams](t, b)
	if code != 200 || params.HyperParams["loss"] != "logistic" || params.Validation.MacroF1 != 0.89 || len(params.Search) != 1 {
		t.Errorf("params: %d %s", code, b)
	}
	for _, p := range []string{"/v1/models/nope", "/v1/models/nope/params"} {
		code, _, b = ts.call(t, "GET", p, "predictor", nil)
		if e := errBody(t, b); code != 404 || e.Code != codeNotFound {
			t.Errorf("%s: %d %+v", p, code, e)
		}
	}
}

func TestFeedback(t *testing.T) {
	m := newFakeModel(t, "support", "v1")
	noHook := newTestServer(t, map[string]Model{"support": m}, nil)
	code, _, b := noHook.call(t, "POST", "/v1/feedback", "feeder", `{"id":"1","text":"t","label":"billing"}`)
	if e := errBody(t, b); code != 503 || e.Code != codeUnavailable || !strings.Contains(e.Message, "not configured") {
		t.Errorf("nil hook: %d %+v", code, e)
	}

	var mu sync.Mutex
	var got []FeedbackRecord
	fail := false
	ts := newTestServer(t, map[string]Model{"support": m}, func(c *Config) {
		c.Feedback = func(_ context.Context, fb FeedbackRecord) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return errors.New("kafka: broker 127.0.0.1:9092 down")
			}
			got = append(got, fb)
			return nil
		}
	})
	code, _, b = ts.call(t, "POST", "/v1/feedback", "feeder", FeedbackRequest{ID: "t-1", Text: "refund me", Label: "billing", Annotator: "ana", Model: "support"})
	if code != 202 || decodeJSON[Accepted](t, b) != (Accepted{Status: "accepted", ID: "t-1"}) {
		t.Fatalf("feedback: %d %s", code, b)
	}
	if len(got) != 1 || got[0] != (FeedbackRecord{ID: "t-1", Text: "refund me", Label: "billing", Annotator: "ana", Model: "support"}) {
		t.Errorf("hook got %+v", got)
	}
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"id":"1","text":"t","label":"billing","model":"nope"}`, 404, ""},
		{`{"id":"","text":"t","label":"billing"}`, 422, "id"},
		{`{"id":"1","text":"","label":"billing"}`, 422, "text"},
		{`{"id":"1","text":"t","label":" "}`, 422, "label"},
		{`{"id":"1","text":"t","label":"x","rating":5}`, 400, "rating"},
	} {
		code, _, b := ts.call(t, "POST", "/v1/feedback", "feeder", tc.body)
		if e := errBody(t, b); code != tc.status || e.Field != tc.field {
			t.Errorf("%s: %d %+v, want %d field %q", tc.body, code, e, tc.status, tc.field)
		}
	}
	// A label the model does not know yet is accepted (a retrain adds it).
	if code, _, b := ts.call(t, "POST", "/v1/feedback", "feeder", `{"id":"3","text":"t","label":"weather","model":"support"}`); code != 202 {
		t.Errorf("new label: %d %s", code, b)
	}
	// Without model, any label passes (the sink decides).
	if code, _, b := ts.call(t, "POST", "/v1/feedback", "feeder", `{"id":"2","text":"t","label":"new_label"}`); code != 202 {
		t.Errorf("no model: %d %s", code, b)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	code, h, b := ts.call(t, "POST", "/v1/feedback", "feeder", `{"id":"3","text":"t","label":"billing"}`)
	if e := errBody(t, b); code != 503 || h.Get("Retry-After") != "1" || strings.Contains(e.Message, "9092") {
		t.Errorf("hook error: %d %q %+v", code, h.Get("Retry-After"), e)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	kafka := false
	empty := newTestServer(t, nil, nil)
	if code, _, _ := empty.call(t, "GET", "/healthz", "", nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	code, _, b := empty.call(t, "GET", "/readyz", "", nil)
	if e := errBody(t, b); code != 503 || e.Code != "not_ready" || !slices.Contains(e.Reasons, "no models loaded") {
		t.Errorf("readyz without models: %d %+v", code, e)
	}
	code, _, b = empty.call(t, "POST", "/v1/predict", "predictor", `{"text":"x"}`)
	if code != 503 {
		t.Errorf("predict without models: %d %s", code, b)
	}

	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) {
		c.KafkaReady = func() bool { return kafka }
	})
	code, _, b = ts.call(t, "GET", "/readyz", "", nil)
	if e := errBody(t, b); code != 503 || !slices.Equal(e.Reasons, []string{"kafka not ready"}) {
		t.Errorf("readyz kafka down: %d %+v", code, e)
	}
	kafka = true
	code, _, b = ts.call(t, "GET", "/readyz", "", nil)
	if r := decodeJSON[ReadyResponse](t, b); code != 200 || r.Status != "ready" || !slices.Equal(r.Models, []string{"support"}) {
		t.Errorf("readyz: %d %s", code, b)
	}
	if ts.Ready() {
		t.Error("Ready() true before Run listens")
	}
}

func TestMetricsEndpoint(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"x"}`)
	ts.call(t, "GET", "/v1/nothing-here", "", nil)
	code, h, b := ts.call(t, "GET", "/metrics", "admin", nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`triage_gateway_requests_total{code="200",route="/v1/predict"} 1`,
		`triage_gateway_requests_total{code="404",route="unmatched"} 1`,
		`triage_gateway_request_duration_seconds_count{route="/v1/predict"} 1`,
		`triage_gateway_batch_size_count{model="support"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	code, _, b := ts.call(t, "GET", "/v2/whatever", "", nil)
	if e := errBody(t, b); code != 404 || e.Code != codeNotFound {
		t.Errorf("unknown route: %d %+v", code, e)
	}
	code, _, b = ts.call(t, "GET", "/v1/predict", "predictor", nil)
	if e := errBody(t, b); code != 405 || e.Code != codeMethod {
		t.Errorf("wrong method: %d %+v", code, e)
	}
}

func TestUIPage(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	code, h, b := ts.call(t, "GET", "/", "", nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("ui: %d %s", code, h.Get("Content-Type"))
	}
	page := string(b)
	for _, want := range []string{"<textarea", `id="model"`, `id="key"`, "localStorage", "/v1/predict", "/v1/models", "Classify", "scores"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"http://", "https://", "<script src", "<link", "innerHTML", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q (must be self-contained and build the DOM safely)", bad)
		}
	}
	csp := h.Get("Content-Security-Policy")
	script, _ := inlineBlock(page, "script")
	if !strings.Contains(csp, "script-src '"+cspHash(script)+"'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not pin the inline script", csp)
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	keys, secrets := standardKeys(t)
	m := newFakeModel(t, "support", "v1")
	s, err := New(Config{Addr: "127.0.0.1:0", Models: map[string]Model{"support": m}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("not ready after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/predict", strings.NewReader(`{"text":"parcel"}`))
	req.Header.Set("X-API-Key", secrets["predictor"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pr PredictResponse
	json.NewDecoder(resp.Body).Decode(&pr)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(pr.Predictions) != 1 {
		t.Fatalf("over TCP: %d %+v", resp.StatusCode, pr)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if s.Ready() {
		t.Error("Ready() after shutdown")
	}
	if m.closed.Load() {
		t.Error("caller-owned model was closed by the gateway")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestSwapWaitsForInFlight: replacing a gateway-owned model closes the old
// one only after requests using it finish, and new requests see the new one.
func TestSwapWaitsForInFlight(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("dynamic=%v", on), func(t *testing.T) {
			old := newFakeModel(t, "support", "v1")
			old.gate, old.entered = make(chan struct{}), make(chan struct{}, 1)
			ts := newTestServer(t, nil, func(c *Config) { c.DisableDynamicBatching = !on })
			ts.models.put(ts.newEntry("support", old, true))

			res := make(chan string, 1)
			go func() {
				code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"x"}`)
				res <- fmt.Sprint(code, " ", decodeJSON[PredictResponse](t, b).Predictions[0].Model.Version)
			}()
			<-old.entered // the request is inside PredictInputs
			next := newFakeModel(t, "support", "v2")
			ts.models.put(ts.newEntry("support", next, true))
			code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"x"}`)
			if v := decodeJSON[PredictResponse](t, b).Predictions[0].Model.Version; code != 200 || v != "v2" {
				t.Errorf("after swap: %d %s", code, v)
			}
			if old.closed.Load() {
				t.Fatal("old model closed while a request was using it")
			}
			close(old.gate)
			if got := <-res; got != "200 v1" {
				t.Errorf("in-flight request: %s, want 200 v1", got)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !old.closed.Load() {
				if time.Now().After(deadline) {
					t.Fatal("old model not closed after its last request")
				}
				time.Sleep(time.Millisecond)
			}
			if next.closed.Load() {
				t.Error("new model closed")
			}
		})
	}
}

// TestOwnModels: with OwnModels, a model serving under two names is closed
// only when neither serves it; Close releases the rest.
func TestOwnModels(t *testing.T) {
	shared, other := newFakeModel(t, "support", "v1"), newFakeModel(t, "other", "v1")
	ts := newTestServer(t, map[string]Model{"a": shared, "b": shared, "c": other}, func(c *Config) { c.OwnModels = true })
	waitClosed := func(m *fakeModel, want bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for m.closed.Load() != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if m.closed.Load() != want {
			t.Fatalf("%s closed = %v, want %v", m.name, !want, want)
		}
	}
	ts.models.put(ts.newEntry("a", newFakeModel(t, "support", "v2"), true))
	time.Sleep(10 * time.Millisecond)
	waitClosed(shared, false) // still serving as b
	if code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", `{"text":"x","model":"b"}`); code != 200 {
		t.Fatalf("b: %d %s", code, b)
	}
	ts.models.put(ts.newEntry("b", newFakeModel(t, "support", "v2"), true))
	waitClosed(shared, true)
	waitClosed(other, false)
	ts.Close()
	waitClosed(other, true)

	// Without OwnModels the caller's models are never closed.
	mine := newFakeModel(t, "support", "v1")
	ts = newTestServer(t, map[string]Model{"a": mine}, nil)
	ts.models.put(ts.newEntry("a", newFakeModel(t, "support", "v2"), true))
	ts.Close()
	time.Sleep(10 * time.Millisecond)
	if mine.closed.Load() {
		t.Error("caller-owned model closed")
	}
}

func TestCompressedBodyRefused(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	req := httptest.NewRequest("POST", "/v1/predict", strings.NewReader("\x1f\x8b..."))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("X-API-Key", ts.keys["predictor"])
	code, _, b := ts.do(t, req)
	if e := errBody(t, b); code != 415 || e.Code != codeUnsupportedMedia {
		t.Errorf("gzip body: %d %+v", code, e)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no API keys") {
		t.Errorf("no keys: %v", err)
	}
	keys, _ := standardKeys(t)
	if _, err := New(Config{Keys: keys, Models: map[string]Model{"../x": newFakeModel(t, "x", "1")}}); err == nil {
		t.Error("bad model name accepted")
	}
	s, err := New(Config{DisableAuth: true, Models: map[string]Model{"support": newFakeModel(t, "support", "v1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := &testServer{Server: s}
	if code, _, b := ts.call(t, "GET", "/metrics", "", nil); code != 200 {
		t.Errorf("auth disabled: %d %s", code, b)
	}
}
