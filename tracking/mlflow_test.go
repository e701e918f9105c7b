package tracking

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fastOptions keep the retry tests quick: a 300 ms budget, 10 ms backoff.
func fastOptions() MLflowOptions {
	return MLflowOptions{RetryBudget: 300 * time.Millisecond, Backoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func newClient(t *testing.T, uri string, opts MLflowOptions) *MLflow {
	t.Helper()
	c, err := NewMLflow(uri, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runCreated answers runs/create.
const runCreated = `{"run":{"info":{"run_id":"0123456789abcdef0123456789abcdef","experiment_id":"1","artifact_uri":"mlflow-artifacts:/1/0123456789abcdef0123456789abcdef/artifacts"}}}`

// fakeMLflow answers experiments/get-by-name and runs/create; fail decides
// (before that) whether a request gets an error status instead.
func fakeMLflow(t *testing.T, fail func(n int, r *http.Request) int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1))
		if code := fail(n, r); code != 0 {
			w.WriteHeader(code)
			io.WriteString(w, `{"error_code":"TEMPORARILY_UNAVAILABLE","message":"busy"}`)
			return
		}
		switch r.URL.Path {
		case "/api/2.0/mlflow/experiments/get-by-name":
			io.WriteString(w, `{"experiment":{"experiment_id":"1","name":"support","lifecycle_stage":"active"}}`)
		case "/api/2.0/mlflow/runs/create":
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("runs/create Content-Type %q", ct)
			}
			io.WriteString(w, runCreated)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestMLflowRetriesUnavailableThenSucceeds(t *testing.T) {
	srv, calls := fakeMLflow(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	c := newClient(t, srv.URL, fastOptions())
	run, err := c.StartRun(context.Background(), RunSpec{Experiment: "support", Name: "tj_1"})
	if err != nil {
		t.Fatalf("StartRun after two 503s: %v", err)
	}
	if run.ID() != "0123456789abcdef0123456789abcdef" {
		t.Errorf("run id %q", run.ID())
	}
	// Two 503s, then get-by-name and runs/create.
	if got := calls.Load(); got != 4 {
		t.Errorf("%d requests, want 4", got)
	}
}

func TestMLflowGivesUpAfterBudgetThenSkips(t *testing.T) {
	srv, calls := fakeMLflow(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	opts := fastOptions()
	opts.Cooldown = time.Hour
	c := newClient(t, srv.URL, opts)
	start := time.Now()
	_, err := c.StartRun(context.Background(), RunSpec{Experiment: "support"})
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	for _, want := range []string{"experiments/get-by-name", "gave up after", "retry budget 300ms", "503 TEMPORARILY_UNAVAILABLE: busy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %s, want about the 300ms budget", took)
	}
	if calls.Load() < 3 {
		t.Errorf("%d attempts, want several", calls.Load())
	}
	// During the cool-down a call fails at once without a request.
	before := calls.Load()
	start = time.Now()
	_, err = c.StartRun(context.Background(), RunSpec{Experiment: "support"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "skipped") {
		t.Errorf("second call: %v, want a skipped ErrUnavailable", err)
	}
	if calls.Load() != before || time.Since(start) > 50*time.Millisecond {
		t.Errorf("second call sent %d requests in %s, want none at once", calls.Load()-before, time.Since(start))
	}
}

func TestMLflowConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	uri := srv.URL
	srv.Close() // nothing listens there now
	c := newClient(t, uri, fastOptions())
	_, err := c.StartRun(context.Background(), RunSpec{Experiment: "support"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("err = %v, want ErrUnavailable after retries", err)
	}
}

func TestMLflowClientErrorsAreNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error_code":"INVALID_PARAMETER_VALUE","message":"Changing param values is not allowed."}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, fastOptions())
	run := &mlflowRun{c: c, id: "r1"}
	err := run.LogParams(context.Background(), map[string]string{"lr": "0.2"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Changing param values") {
		t.Errorf("err = %v, want ErrInvalid with MLflow's message", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d requests, want 1 (a 400 is final)", calls.Load())
	}
}

func TestMLflowInternalErrorRetriedWithoutCooldown(t *testing.T) {
	srv, calls := fakeMLflow(t, func(n int, _ *http.Request) int {
		if n <= 100 {
			return http.StatusInternalServerError
		}
		return 0
	})
	c := newClient(t, srv.URL, fastOptions())
	run := &mlflowRun{c: c, id: "r1"}
	err := run.SetTag(context.Background(), "k", "v")
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("err = %v, want a give-up that is not ErrUnavailable", err)
	}
	// A 500 answered: the server is up, so no cool-down.
	before := calls.Load()
	_ = run.SetTag(context.Background(), "k", "v")
	if calls.Load() == before {
		t.Error("the call after a 500 give-up sent nothing; 500s must not start the cool-down")
	}
}

func TestMLflowStopsRetryingWhenCancelled(t *testing.T) {
	srv, _ := fakeMLflow(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	opts := fastOptions()
	opts.RetryBudget, opts.Backoff, opts.MaxBackoff = time.Minute, 100*time.Millisecond, 100*time.Millisecond
	c := newClient(t, srv.URL, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.StartRun(ctx, RunSpec{Experiment: "support"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("err = %v after %s, want the context's deadline promptly", err, time.Since(start))
	}
}

func TestMLflowRunRequests(t *testing.T) {
	type req struct {
		method, path, auth string
		body               string
	}
	var mu sync.Mutex
	var got []req
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, req{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), string(b)})
		mu.Unlock()
		switch r.URL.Path {
		case "/api/2.0/mlflow/experiments/get-by-name":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no experiment"}`)
		case "/api/2.0/mlflow/experiments/create":
			io.WriteString(w, `{"experiment_id":"7"}`)
		case "/api/2.0/mlflow/runs/create":
			io.WriteString(w, runCreated)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	defer srv.Close()
	opts := fastOptions()
	opts.Token = "secret"
	c := newClient(t, srv.URL+"/", opts)
	ctx := context.Background()
	run, err := c.StartRun(ctx, RunSpec{Experiment: "support", Name: "trial", ParentID: "p1", Tags: map[string]string{"job_id": "tj_1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.LogMetric(ctx, "val_accuracy", 0.5, 3); err != nil {
		t.Fatal(err)
	}
	dir := writeTree(t, map[string]string{"model.json": "{}", "a b/c.bin": "xyz"})
	if err := run.LogArtifacts(ctx, dir, "bundle"); err != nil {
		t.Fatal(err)
	}
	if err := run.End(ctx, StatusFinished); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartRun(ctx, RunSpec{Experiment: "support"}); err != nil { // experiment id cached
		t.Fatal(err)
	}
	paths := []string{}
	for _, r := range got {
		paths = append(paths, r.method+" "+r.path)
		if r.auth != "Bearer secret" {
			t.Errorf("%s: Authorization %q", r.path, r.auth)
		}
	}
	want := []string{
		"GET /api/2.0/mlflow/experiments/get-by-name",
		"POST /api/2.0/mlflow/experiments/create",
		"POST /api/2.0/mlflow/runs/create",
		"POST /api/2.0/mlflow/runs/log-batch",
		"PUT /api/2.0/mlflow-artifacts/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/bundle/a%20b/c.bin",
		"PUT /api/2.0/mlflow-artifacts/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/bundle/model.json",
		"POST /api/2.0/mlflow/runs/update",
		"POST /api/2.0/mlflow/runs/create",
	}
	if strings.Join(paths, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
	var create struct {
		ExperimentID string `json:"experiment_id"`
		RunName      string `json:"run_name"`
		Tags         []kv   `json:"tags"`
	}
	if err := json.Unmarshal([]byte(got[2].body), &create); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, kv := range create.Tags {
		tags[kv.Key] = kv.Value
	}
	if create.ExperimentID != "7" || create.RunName != "trial" || tags["mlflow.parentRunId"] != "p1" || tags["job_id"] != "tj_1" {
		t.Errorf("runs/create body %s", got[2].body)
	}
	if !strings.Contains(got[3].body, `"key":"val_accuracy"`) || !strings.Contains(got[3].body, `"step":3`) || !strings.Contains(got[3].body, `"value":0.5`) {
		t.Errorf("log-batch body %s", got[3].body)
	}
	if got[4].body != "xyz" {
		t.Errorf("uploaded %q, want the file's bytes", got[4].body)
	}
	if !strings.Contains(got[6].body, `"status":"FINISHED"`) {
		t.Errorf("runs/update body %s", got[6].body)
	}
}

func TestMLflowArtifactsNeedTheProxy(t *testing.T) {
	run := &mlflowRun{c: newClient(t, "http://127.0.0.1:1", fastOptions()), id: "r1", artifactURI: "s3://bucket/1/r1/artifacts"}
	err := run.LogArtifacts(context.Background(), t.TempDir(), "bundle")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--serve-artifacts") {
		t.Errorf("err = %v, want a hint at --serve-artifacts", err)
	}
}

func TestMLflowSetAliasNeedsAMirroredVersion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/2.0/mlflow/model-versions/search" {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		if f := r.URL.Query().Get("filter"); f != "name='support' AND tags.triage_version='v9'" {
			t.Errorf("filter %q", f)
		}
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, fastOptions())
	err := c.SetAlias(context.Background(), "support", "champion", "v9")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
	if err := c.SetAlias(context.Background(), "support", "champion", "v1' OR '1'='1"); !errors.Is(err, ErrInvalid) {
		t.Errorf("quoted version: err = %v, want ErrInvalid", err)
	}
}

func TestNewMLflowRejectsBadURIs(t *testing.T) {
	for _, uri := range []string{"", "127.0.0.1:5000", "file:///tmp/mlruns", "http://"} {
		if _, err := NewMLflow(uri, MLflowOptions{}); err == nil {
			t.Errorf("NewMLflow(%q) accepted", uri)
		}
	}
}
