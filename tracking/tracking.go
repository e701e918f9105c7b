// Package tracking records training runs (parameters, per-epoch metrics,
// tags, the trained bundle) and mirrors registry versions and aliases into
// an experiment tracker: MLflow through its REST API (NewMLflow), or JSON
// files in a local run log when no tracking server is configured (NewLocal).
//
// Tracking is best effort by design: every call is bounded in time and
// returns its error to the caller, which logs it; it must never fail a
// training job or serving.
package tracking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Run statuses accepted by Run.End (MLflow's RunStatus names).
const (
	StatusRunning  = "RUNNING"
	StatusFinished = "FINISHED"
	StatusFailed   = "FAILED"
	StatusKilled   = "KILLED"
)

// Sentinel errors.
var (
	// ErrNotFound: no such run, experiment, model version or alias.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a request the tracker refuses as given (bad status,
	// changed parameter, bad path).
	ErrInvalid = errors.New("invalid tracking request")
	// ErrUnavailable: the tracking server did not answer within the retry
	// budget, or is in its cool-down after such a failure.
	ErrUnavailable = errors.New("tracking server unavailable")
)

// Tracker starts runs. The trainer holds one for its lifetime.
type Tracker interface {
	StartRun(ctx context.Context, spec RunSpec) (Run, error)
}

// RunSpec names a run.
type RunSpec struct {
	Experiment string            // the model name; created on first use
	Name       string            // shown in listings, e.g. the job id or a trial's parameters
	ParentID   string            // the parent run's ID (child runs of a job's grid search)
	Tags       map[string]string // initial tags
}

// Run is one training run, or one trial of it. Its methods may be called
// from several goroutines.
type Run interface {
	ID() string
	// LogParams records parameters; like MLflow, a parameter cannot change
	// once logged (the same value again is fine).
	LogParams(ctx context.Context, params map[string]string) error
	// LogMetric records value at step (the epoch, for per-epoch metrics).
	LogMetric(ctx context.Context, key string, value float64, step int64) error
	// LogArtifacts stores every file under localDir at artifactPath ("" =
	// the run's artifact root), keeping the folder layout.
	LogArtifacts(ctx context.Context, localDir, artifactPath string) error
	SetTag(ctx context.Context, key, value string) error
	// End sets the final status: StatusFinished, StatusFailed or StatusKilled.
	End(ctx context.Context, status string) error
}

// Mirror follows the Triage registry in the tracker's model registry: each
// Triage version becomes a version of the registered model of the same
// name, and aliases (champion, ...) follow promotions and rollbacks.
type Mirror interface {
	// RegisterVersion records Triage version of model as a tracker model
	// version whose source is artifactPath in run runID's artifacts.
	// Registering the same version again is a no-op.
	RegisterVersion(ctx context.Context, model, version, runID, artifactPath string) error
	// SetAlias points alias at the tracker version mirroring Triage version.
	SetAlias(ctx context.Context, model, alias, version string) error
	// RemoveAlias deletes alias; removing an absent alias is a no-op.
	RemoveAlias(ctx context.Context, model, alias string) error
}

// Reader reads runs back, for `triage runs`.
type Reader interface {
	// List returns experiment's runs ("" = every experiment), newest first,
	// at most limit of them (0 = all). Metrics may hold only each key's
	// latest point; Get has the full history.
	List(ctx context.Context, experiment string, limit int) ([]RunRecord, error)
	// Get returns one run, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (RunRecord, error)
}

// RunRecord is a run as stored: the local run log's run.json, or what
// MLflow returns.
type RunRecord struct {
	ID         string            `json:"id"`
	Experiment string            `json:"experiment"`
	Name       string            `json:"name,omitempty"`
	ParentID   string            `json:"parent_id,omitempty"`
	Status     string            `json:"status"`
	StartTime  time.Time         `json:"start_time"`
	EndTime    *time.Time        `json:"end_time,omitempty"`
	Params     map[string]string `json:"params"`
	Tags       map[string]string `json:"tags"`
	// Metrics holds each key's points in the order logged.
	Metrics     map[string][]MetricPoint `json:"metrics"`
	ArtifactURI string                   `json:"artifact_uri,omitempty"`
	Artifacts   []Artifact               `json:"artifacts,omitempty"`
}

// Latest is key's last logged point (the highest step, latest logged on ties).
func (r RunRecord) Latest(key string) (MetricPoint, bool) {
	ps := r.Metrics[key]
	if len(ps) == 0 {
		return MetricPoint{}, false
	}
	best := ps[0]
	for _, p := range ps[1:] {
		if p.Step >= best.Step {
			best = p
		}
	}
	return best, true
}

// MetricPoint is one logged value of a metric.
type MetricPoint struct {
	Step  int64
	Value float64
	Time  time.Time
}

// metricJSON spells non-finite values as MLflow's REST API does ("NaN",
// "Infinity", "-Infinity"): encoding/json refuses them as numbers.
type metricJSON struct {
	Step  int64           `json:"step"`
	Value json.RawMessage `json:"value"`
	Time  time.Time       `json:"timestamp"`
}

// MarshalJSON implements json.Marshaler.
func (p MetricPoint) MarshalJSON() ([]byte, error) {
	return json.Marshal(metricJSON{Step: p.Step, Value: floatJSON(p.Value), Time: p.Time})
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *MetricPoint) UnmarshalJSON(b []byte) error {
	var m metricJSON
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	v, err := parseFloatJSON(m.Value)
	if err != nil {
		return err
	}
	*p = MetricPoint{Step: m.Step, Value: v, Time: m.Time}
	return nil
}

func floatJSON(v float64) json.RawMessage {
	switch {
	case math.IsNaN(v):
		return json.RawMessage(`"NaN"`)
	case math.IsInf(v, 1):
		return json.RawMessage(`"Infinity"`)
	case math.IsInf(v, -1):
		return json.RawMessage(`"-Infinity"`)
	}
	b, _ := json.Marshal(v) // finite: cannot fail
	return b
}

func parseFloatJSON(b json.RawMessage) (float64, error) {
	var s string
	if json.Unmarshal(b, &s) == nil {
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		return 0, fmt.Errorf("metric value %q: not a number", s)
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("metric value %s: %w", b, err)
	}
	return v, nil
}

// Artifact is one stored file.
type Artifact struct {
	Path string `json:"path"` // relative to the run's artifact root, slash-separated
	Size int64  `json:"size"`
}

func checkStatus(status string) error {
	switch status {
	case StatusFinished, StatusFailed, StatusKilled:
		return nil
	}
	return fmt.Errorf("run status %q: use %s, %s or %s: %w", status, StatusFinished, StatusFailed, StatusKilled, ErrInvalid)
}

// cleanArtifactPath checks an artifact path stays inside the run's
// artifacts: relative, slash-separated, no "..".
func cleanArtifactPath(p string) (string, error) {
	p = strings.Trim(strings.ReplaceAll(p, "\\", "/"), "/")
	if p == "" {
		return "", nil
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("artifact path %q: must be relative, without empty, . or .. parts: %w", p, ErrInvalid)
		}
	}
	return p, nil
}

// idRE is what a run id may look like: MLflow's are 32 hex digits, and the
// local log uses the same; the check keeps ids out of paths.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("run id %q: %w", id, ErrInvalid)
	}
	return nil
}
