package tracking

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MLflowOptions configures NewMLflow. Zero values take the defaults noted.
type MLflowOptions struct {
	// HTTPClient sends the requests; default a client of its own (Timeout
	// and UploadTimeout bound each attempt).
	HTTPClient *http.Client
	// Timeout bounds one attempt of an API call; default 10s.
	Timeout time.Duration
	// UploadTimeout bounds one attempt of one artifact file; default 5m.
	UploadTimeout time.Duration
	// RetryBudget is how long one call keeps retrying connection errors,
	// 429 and 5xx before it returns the error; default 30s.
	RetryBudget time.Duration
	// Backoff is the first wait between attempts (doubled each time, with
	// jitter, up to MaxBackoff); defaults 250ms and 5s.
	Backoff, MaxBackoff time.Duration
	// Cooldown: once a call has given up because the server is unreachable
	// (connection errors, 502, 503, 504), later calls fail at once with
	// ErrUnavailable for this long, so a dead server costs a training job
	// one retry budget per Cooldown, not one per metric. Default 1m;
	// negative disables.
	Cooldown time.Duration
	// Token, when set, is sent as a bearer token (MLFLOW_TRACKING_TOKEN).
	// User info in the URI is sent as basic auth.
	Token string
	// User is recorded as each run's mlflow.user tag.
	User string
	// Logger reports retries (debug) and the server becoming unreachable
	// (warn); default slog.Default().
	Logger *slog.Logger
}

// MLflow talks to an MLflow tracking server's REST API (2.0 endpoints, as
// served by MLflow 3): runs, metrics and artifacts (uploaded through the
// server's artifact proxy, `mlflow server --serve-artifacts`), and the model
// registry. It is a Tracker, a Mirror and a Reader, safe for concurrent use.
type MLflow struct {
	base       *url.URL // without user info
	user, pass string
	basic      bool
	opts       MLflowOptions
	http       *http.Client
	log        *slog.Logger

	mu          sync.Mutex
	experiments map[string]string            // name -> id
	expNames    map[string]string            // id -> name
	artifacts   map[string]string            // run id -> artifact_uri
	models      map[string]bool              // registered models known to exist
	versions    map[string]map[string]string // model -> Triage version -> MLflow version
	downUntil   time.Time                    // see MLflowOptions.Cooldown
}

var (
	_ Tracker = (*MLflow)(nil)
	_ Mirror  = (*MLflow)(nil)
	_ Reader  = (*MLflow)(nil)
)

// NewMLflow returns a client of the tracking server at uri
// (http://host:port, optionally with a path prefix). It does not connect.
func NewMLflow(uri string, opts MLflowOptions) (*MLflow, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("mlflow uri %q: %w", uri, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mlflow uri %q: want http://host:port or https://host: %w", uri, ErrInvalid)
	}
	c := &MLflow{opts: opts, http: opts.HTTPClient, log: cmp.Or(opts.Logger, slog.Default()),
		experiments: map[string]string{}, expNames: map[string]string{}, artifacts: map[string]string{},
		models: map[string]bool{}, versions: map[string]map[string]string{}}
	if u.User != nil {
		c.user, c.basic = u.User.Username(), true
		c.pass, _ = u.User.Password()
		u.User = nil
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	c.base = u
	if c.http == nil {
		c.http = &http.Client{}
	}
	c.opts.Timeout = cmp.Or(c.opts.Timeout, 10*time.Second)
	c.opts.UploadTimeout = cmp.Or(c.opts.UploadTimeout, 5*time.Minute)
	c.opts.RetryBudget = cmp.Or(c.opts.RetryBudget, 30*time.Second)
	c.opts.Backoff = cmp.Or(c.opts.Backoff, 250*time.Millisecond)
	c.opts.MaxBackoff = cmp.Or(c.opts.MaxBackoff, 5*time.Second)
	c.opts.Cooldown = cmp.Or(c.opts.Cooldown, time.Minute)
	return c, nil
}

// URI is the server's address (without credentials).
func (c *MLflow) URI() string { return c.base.String() }

// APIError is an answer of the server other than 2xx.
type APIError struct {
	Op         string // the endpoint, e.g. runs/create
	StatusCode int
	Code       string // MLflow's error_code, e.g. RESOURCE_DOES_NOT_EXIST
	Message    string
}

func (e *APIError) Error() string {
	msg := e.Message
	if len(msg) > 300 { // MLflow includes whole SQL statements
		msg = msg[:300] + "..."
	}
	return fmt.Sprintf("%d %s: %s", e.StatusCode, cmp.Or(e.Code, http.StatusText(e.StatusCode)), msg)
}

// Is maps MLflow's error codes to this package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == "RESOURCE_DOES_NOT_EXIST" || (e.Code == "" && e.StatusCode == http.StatusNotFound)
	case ErrInvalid:
		return e.Code == "INVALID_PARAMETER_VALUE"
	case errAlreadyExists:
		return e.Code == "RESOURCE_ALREADY_EXISTS"
	}
	return false
}

var errAlreadyExists = errors.New("already exists")

// request is one API call; it is rebuilt for every attempt.
type request struct {
	method string
	path   string // after the base URL, e.g. /api/2.0/mlflow/runs/create
	query  url.Values
	body   any    // sent as JSON
	file   string // or: a file sent as the body (artifact upload)
}

func api(method, endpoint string, body any) request {
	return request{method: method, path: "/api/2.0/mlflow/" + endpoint, body: body}
}

func apiGet(endpoint string, q url.Values) request {
	return request{method: http.MethodGet, path: "/api/2.0/mlflow/" + endpoint, query: q}
}

// call sends rq, retrying connection errors, 429 and 5xx with backoff
// within the retry budget, and decodes a 2xx answer into out (when not nil).
func (c *MLflow) call(ctx context.Context, op string, rq request, out any) error {
	c.mu.Lock()
	down := c.downUntil
	c.mu.Unlock()
	if time.Now().Before(down) {
		return fmt.Errorf("mlflow %s: %w: skipped until %s after the server stopped answering", op, ErrUnavailable, down.Format(time.TimeOnly))
	}
	var body []byte
	if rq.body != nil {
		var err error
		if body, err = json.Marshal(rq.body); err != nil {
			return fmt.Errorf("mlflow %s: encode: %w", op, err)
		}
	}
	start := time.Now()
	deadline := start.Add(c.opts.RetryBudget)
	delay := c.opts.Backoff
	// answered: some attempt of this call got an HTTP answer, so the server
	// is up even if the last attempt was cut short by the retry budget.
	answered := false
	// earlier: the latest error not caused by the budget cutting an attempt
	// short, which says more about the server than "deadline exceeded".
	var earlier error
	for attempt := 1; ; attempt++ {
		res, err := c.attempt(ctx, rq, body, deadline, out)
		answered = answered || (err != nil && !res.unavailable)
		if cut := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil; cut && earlier != nil {
			err = fmt.Errorf("%w (before that: %w)", err, earlier)
		} else if err != nil && !cut {
			earlier = err
		}
		if err == nil {
			c.mu.Lock()
			c.downUntil = time.Time{}
			c.mu.Unlock()
			return nil
		}
		if res.final || ctx.Err() != nil {
			return fmt.Errorf("mlflow %s: %w", op, err)
		}
		wait := delay/2 + rand.N(delay/2+1) // jitter spreads processes retrying together
		wait = max(wait, res.retryAfter)
		if time.Now().Add(wait).After(deadline) {
			elapsed := time.Since(start).Round(time.Millisecond)
			if !res.unavailable || answered {
				return fmt.Errorf("mlflow %s: gave up after %d attempts in %s (retry budget %s): %w", op, attempt, elapsed, c.opts.RetryBudget, err)
			}
			if c.opts.Cooldown > 0 {
				c.mu.Lock()
				c.downUntil = time.Now().Add(c.opts.Cooldown)
				c.mu.Unlock()
				c.log.Warn("mlflow server unreachable; tracking calls are skipped for a while", "uri", c.URI(), "op", op, "cooldown", c.opts.Cooldown, "err", err)
			}
			return fmt.Errorf("mlflow %s: %w: gave up after %d attempts in %s (retry budget %s): %w", op, ErrUnavailable, attempt, elapsed, c.opts.RetryBudget, err)
		}
		c.log.Debug("mlflow call failed, retrying", "op", op, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("mlflow %s: %w (last error: %w)", op, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, c.opts.MaxBackoff)
	}
}

// attemptResult says what to do after a failed attempt.
type attemptResult struct {
	final       bool          // not worth retrying
	unavailable bool          // the server did not answer, or said it cannot
	retryAfter  time.Duration // the server's Retry-After
}

func (c *MLflow) attempt(ctx context.Context, rq request, body []byte, deadline time.Time, out any) (attemptResult, error) {
	// JSON calls stay within the retry budget; an upload gets its own
	// timeout, since a large file may need longer than the budget.
	end := time.Now().Add(c.opts.Timeout)
	if deadline.Before(end) {
		end = deadline
	}
	actx, cancel := context.WithDeadline(ctx, end)
	if rq.file != "" {
		cancel()
		actx, cancel = context.WithTimeout(ctx, c.opts.UploadTimeout)
	}
	defer cancel()
	req, err := c.newRequest(actx, rq, body)
	if err != nil {
		return attemptResult{final: true}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return attemptResult{unavailable: true}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return attemptResult{unavailable: true}, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		if out == nil || len(bytes.TrimSpace(b)) == 0 {
			return attemptResult{}, nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return attemptResult{final: true}, fmt.Errorf("decode the answer: %w", err)
		}
		return attemptResult{}, nil
	}
	apiErr := &APIError{Op: rq.path, StatusCode: resp.StatusCode}
	var e struct {
		Code    string `json:"error_code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && (e.Code != "" || e.Message != "") {
		apiErr.Code, apiErr.Message = e.Code, e.Message
	} else {
		apiErr.Message = strings.TrimSpace(string(b))
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests || s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout:
		return attemptResult{unavailable: true, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}, apiErr
	case s >= 500:
		// A 500 may be transient (SQLite busy): retried, but it does not
		// mark the server unreachable.
		return attemptResult{}, apiErr
	}
	return attemptResult{final: true}, apiErr
}

func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

func (c *MLflow) newRequest(ctx context.Context, rq request, body []byte) (*http.Request, error) {
	u := *c.base
	u.Path += rq.path
	if rq.path != "" {
		// Keep escaped artifact paths as given (spaces, unicode).
		u.RawPath = c.base.EscapedPath() + escapePath(rq.path)
	}
	if rq.query != nil {
		u.RawQuery = rq.query.Encode()
	}
	var (
		req *http.Request
		err error
	)
	switch {
	case rq.file != "":
		f, ferr := os.Open(rq.file)
		if ferr != nil {
			return nil, ferr
		}
		st, ferr := f.Stat()
		if ferr != nil {
			f.Close()
			return nil, ferr
		}
		// Do closes f.
		if req, err = http.NewRequestWithContext(ctx, rq.method, u.String(), f); err != nil {
			f.Close()
			return nil, err
		}
		req.ContentLength = st.Size()
		req.Header.Set("Content-Type", "application/octet-stream")
	case body != nil:
		if req, err = http.NewRequestWithContext(ctx, rq.method, u.String(), bytes.NewReader(body)); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json") // MLflow refuses JSON bodies without it
	default:
		if req, err = http.NewRequestWithContext(ctx, rq.method, u.String(), nil); err != nil {
			return nil, err
		}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "triage-tracking")
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	} else if c.basic {
		req.SetBasicAuth(c.user, c.pass)
	}
	return req, nil
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

type kv struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// kvs is m as MLflow's key/value list, in key order.
func kvs(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, kv{k, m[k]})
	}
	return out
}

// millis decodes MLflow's int64 fields, sent as numbers or as strings.
type millis int64

func (m *millis) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*m = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("int64 field %s: %w", b, err)
	}
	*m = millis(v)
	return nil
}

func msTime(ms millis) time.Time { return time.UnixMilli(int64(ms)).UTC() }

func nowMillis() int64 { return time.Now().UnixMilli() }

// ---------------------------------------------------------------- runs

// experimentID finds experiment name, creating it on first use.
func (c *MLflow) experimentID(ctx context.Context, name string) (string, error) {
	c.mu.Lock()
	id, ok := c.experiments[name]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	exp, err := c.experimentByName(ctx, name)
	if errors.Is(err, ErrNotFound) {
		var created struct {
			ID string `json:"experiment_id"`
		}
		err = c.call(ctx, "experiments/create", api(http.MethodPost, "experiments/create", map[string]any{"name": name}), &created)
		exp.ID, exp.Lifecycle = created.ID, "active"
		if errors.Is(err, errAlreadyExists) { // another process created it meanwhile
			exp, err = c.experimentByName(ctx, name)
		}
	}
	if err != nil {
		return "", fmt.Errorf("experiment %q: %w", name, err)
	}
	if exp.Lifecycle == "deleted" {
		return "", fmt.Errorf("experiment %q is deleted in MLflow: restore it (or delete it for good) first: %w", name, ErrInvalid)
	}
	c.mu.Lock()
	c.experiments[name], c.expNames[exp.ID] = exp.ID, name
	c.mu.Unlock()
	return exp.ID, nil
}

type experimentJSON struct {
	ID        string `json:"experiment_id"`
	Name      string `json:"name"`
	Lifecycle string `json:"lifecycle_stage"`
}

func (c *MLflow) experimentByName(ctx context.Context, name string) (experimentJSON, error) {
	var got struct {
		Experiment experimentJSON `json:"experiment"`
	}
	err := c.call(ctx, "experiments/get-by-name", apiGet("experiments/get-by-name", url.Values{"experiment_name": {name}}), &got)
	return got.Experiment, err
}

// StartRun creates a run in the experiment named spec.Experiment (created
// on first use); ParentID becomes the mlflow.parentRunId tag, which MLflow's
// UI nests runs by.
func (c *MLflow) StartRun(ctx context.Context, spec RunSpec) (Run, error) {
	if spec.Experiment == "" {
		return nil, fmt.Errorf("start run: the experiment (model name) is required: %w", ErrInvalid)
	}
	expID, err := c.experimentID(ctx, spec.Experiment)
	if err != nil {
		return nil, fmt.Errorf("start run: %w", err)
	}
	tags := map[string]string{"mlflow.source.name": "triage"}
	for k, v := range spec.Tags {
		tags[k] = v
	}
	if spec.ParentID != "" {
		tags["mlflow.parentRunId"] = spec.ParentID
	}
	if c.opts.User != "" {
		tags["mlflow.user"] = c.opts.User
	}
	body := map[string]any{"experiment_id": expID, "start_time": nowMillis(), "tags": kvs(tags)}
	if spec.Name != "" {
		body["run_name"] = spec.Name
	}
	var got struct {
		Run runJSON `json:"run"`
	}
	if err := c.call(ctx, "runs/create", api(http.MethodPost, "runs/create", body), &got); err != nil {
		return nil, fmt.Errorf("start run in %q: %w", spec.Experiment, err)
	}
	info := got.Run.Info
	id := cmp.Or(info.RunID, info.RunUUID)
	if id == "" {
		return nil, fmt.Errorf("start run in %q: mlflow runs/create answered no run id", spec.Experiment)
	}
	c.mu.Lock()
	c.artifacts[id] = info.ArtifactURI
	c.mu.Unlock()
	return &mlflowRun{c: c, id: id, artifactURI: info.ArtifactURI}, nil
}

type mlflowRun struct {
	c           *MLflow
	id          string
	artifactURI string
}

func (r *mlflowRun) ID() string { return r.id }

// logBatch limits (MLflow's log-batch accepts at most 100 params per request).
const maxParamsPerBatch = 100

func (r *mlflowRun) LogParams(ctx context.Context, params map[string]string) error {
	all := kvs(params)
	for len(all) > 0 {
		n := min(len(all), maxParamsPerBatch)
		body := map[string]any{"run_id": r.id, "params": all[:n]}
		if err := r.c.call(ctx, "runs/log-batch", api(http.MethodPost, "runs/log-batch", body), nil); err != nil {
			return fmt.Errorf("run %s: log params: %w", r.id, err)
		}
		all = all[n:]
	}
	return nil
}

func (r *mlflowRun) LogMetric(ctx context.Context, key string, value float64, step int64) error {
	if key == "" {
		return fmt.Errorf("log metric: empty key: %w", ErrInvalid)
	}
	// The timestamp is fixed before any retry, so a retried batch is the
	// same row (MLflow ignores an exact duplicate).
	m := map[string]any{"key": key, "value": floatJSON(value), "timestamp": nowMillis(), "step": step}
	body := map[string]any{"run_id": r.id, "metrics": []any{m}}
	if err := r.c.call(ctx, "runs/log-batch", api(http.MethodPost, "runs/log-batch", body), nil); err != nil {
		return fmt.Errorf("run %s: log metric %s: %w", r.id, key, err)
	}
	return nil
}

func (r *mlflowRun) SetTag(ctx context.Context, key, value string) error {
	if key == "" {
		return fmt.Errorf("set tag: empty key: %w", ErrInvalid)
	}
	body := map[string]any{"run_id": r.id, "key": key, "value": value}
	if err := r.c.call(ctx, "runs/set-tag", api(http.MethodPost, "runs/set-tag", body), nil); err != nil {
		return fmt.Errorf("run %s: set tag %s: %w", r.id, key, err)
	}
	return nil
}

func (r *mlflowRun) End(ctx context.Context, status string) error {
	if err := checkStatus(status); err != nil {
		return err
	}
	body := map[string]any{"run_id": r.id, "status": status, "end_time": nowMillis()}
	if err := r.c.call(ctx, "runs/update", api(http.MethodPost, "runs/update", body), nil); err != nil {
		return fmt.Errorf("run %s: end %s: %w", r.id, status, err)
	}
	return nil
}

// LogArtifacts uploads every regular file under localDir (links to files
// followed) through the server's artifact proxy, one PUT per file.
func (r *mlflowRun) LogArtifacts(ctx context.Context, localDir, artifactPath string) error {
	ap, err := cleanArtifactPath(artifactPath)
	if err != nil {
		return err
	}
	root, err := proxiedRoot(r.artifactURI)
	if err != nil {
		return fmt.Errorf("run %s: %w", r.id, err)
	}
	files, err := walkFiles(localDir)
	if err != nil {
		return fmt.Errorf("run %s: log artifacts: %w", r.id, err)
	}
	for _, f := range files {
		dst := strings.Trim(root+"/"+ap+"/"+f.rel, "/")
		dst = strings.ReplaceAll(dst, "//", "/")
		rq := request{method: http.MethodPut, path: "/api/2.0/mlflow-artifacts/artifacts/" + dst, file: f.path}
		if err := r.c.call(ctx, "mlflow-artifacts/artifacts", rq, nil); err != nil {
			return fmt.Errorf("run %s: upload %s: %w", r.id, f.rel, err)
		}
	}
	return nil
}

// proxiedRoot is the path under /api/2.0/mlflow-artifacts/artifacts/ of an
// mlflow-artifacts: URI (mlflow-artifacts:/1/<run>/artifacts, or with a host).
func proxiedRoot(artifactURI string) (string, error) {
	u, err := url.Parse(artifactURI)
	if err != nil || u.Scheme != "mlflow-artifacts" {
		return "", fmt.Errorf("artifacts are stored at %q, not behind the tracking server: uploading needs `mlflow server --serve-artifacts` (an mlflow-artifacts: location): %w", artifactURI, ErrInvalid)
	}
	return strings.Trim(u.Path, "/"), nil
}

type localFile struct{ path, rel string }

func walkFiles(dir string) ([]localFile, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder: %w", dir, ErrInvalid)
	}
	var out []localFile
	err = walkDir(dir, "", &out)
	return out, err
}

// walkDir lists regular files (following links to files, not to folders,
// so a link cannot loop) with slash-separated paths relative to root.
func walkDir(root, rel string, out *[]localFile) error {
	ents, err := os.ReadDir(joinRel(root, rel))
	if err != nil {
		return err
	}
	for _, e := range ents {
		r := strings.TrimPrefix(rel+"/"+e.Name(), "/")
		if e.IsDir() {
			if err := walkDir(root, r, out); err != nil {
				return err
			}
			continue
		}
		p := joinRel(root, r)
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().IsRegular() {
			*out = append(*out, localFile{path: p, rel: r})
		}
	}
	return nil
}

func joinRel(root, rel string) string {
	if rel == "" {
		return root
	}
	return root + string(os.PathSeparator) + strings.ReplaceAll(rel, "/", string(os.PathSeparator))
}
