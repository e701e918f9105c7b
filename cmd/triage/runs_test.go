package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/tracking"
)

// localRuns records a job (parent + two trial runs) of model support and
// one run of model other, as the trainer would.
func localRuns(t *testing.T) (dir, parentID string, childIDs []string) {
	t.Helper()
	ctx := context.Background()
	dir = filepath.Join(t.TempDir(), "runs")
	l := tracking.NewLocal(dir, nil)
	parent, err := l.StartRun(ctx, tracking.RunSpec{Experiment: "support", Name: "tj_1", Tags: map[string]string{"job_id": "tj_1"}})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(parent.LogParams(ctx, map[string]string{"seed": "42"}))
	for _, lr := range []string{"0.1", "0.2"} {
		child, err := l.StartRun(ctx, tracking.RunSpec{Experiment: "support", Name: "lr=" + lr, ParentID: parent.ID()})
		must(err)
		must(child.LogParams(ctx, map[string]string{"learning_rate": lr}))
		for step := int64(1); step <= 3; step++ {
			must(child.LogMetric(ctx, "val_accuracy", 0.5+float64(step)/10, step))
		}
		must(child.End(ctx, tracking.StatusFinished))
		childIDs = append(childIDs, child.ID())
	}
	must(parent.LogMetric(ctx, "val_accuracy", 0.8, 3))
	bundleDir := t.TempDir()
	must(os.WriteFile(filepath.Join(bundleDir, "model.json"), []byte("{}"), 0o644))
	must(parent.LogArtifacts(ctx, bundleDir, "bundle"))
	must(parent.End(ctx, tracking.StatusFinished))
	_, err = l.StartRun(ctx, tracking.RunSpec{Experiment: "other"}) // still running
	must(err)
	return dir, parent.ID(), childIDs
}

func TestRunsListAndShowLocal(t *testing.T) {
	dir, parentID, childIDs := localRuns(t)

	r := mustTriage(t, "runs", "list", "--runs-dir", dir)
	if !strings.HasPrefix(r.stdout, "RUN ") || strings.Count(r.stdout, "\n") != 5 {
		t.Errorf("list: want a header and 4 runs:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "val_accuracy=0.8") || !strings.Contains(r.stdout, parentID[:8]) {
		t.Errorf("list lacks the latest metric or the parent column:\n%s", r.stdout)
	}

	r = mustTriage(t, "runs", "list", "--model", "support", "--json", "--runs-dir", dir)
	var runs []tracking.RunRecord
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	if len(runs) != 3 {
		t.Errorf("list --model support: %d runs, want 3", len(runs))
	}
	if r := mustTriage(t, "runs", "list", "--limit", "1", "--json", "--runs-dir", dir); strings.Count(r.stdout, `"id"`) != 1 {
		t.Errorf("--limit 1:\n%s", r.stdout)
	}

	// Flags may follow the id.
	r = mustTriage(t, "runs", "show", parentID, "--runs-dir", dir)
	for _, want := range []string{"run        " + parentID, "status     FINISHED", "seed", "job_id", "bundle/model.json", childIDs[0], childIDs[1], "lr=0.2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustTriage(t, "runs", "show", "--json", "--runs-dir", dir, childIDs[0])
	var child struct {
		tracking.RunRecord
		Children []tracking.RunRecord `json:"children"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &child); err != nil {
		t.Fatalf("show --json: %v\n%s", err, r.stdout)
	}
	if child.ParentID != parentID || len(child.Metrics["val_accuracy"]) != 3 || len(child.Children) != 0 {
		t.Errorf("show --json child = %+v", child)
	}

	r = triage(t, "runs", "show", "0123456789abcdef0123456789abcdef", "--runs-dir", dir)
	if !errors.Is(r.err, tracking.ErrNotFound) || !strings.Contains(r.err.Error(), dir) {
		t.Errorf("show unknown: %v, want not found naming %s", r.err, dir)
	}
	if r := triage(t, "runs", "show", "--runs-dir", dir); r.err == nil || !strings.Contains(r.err.Error(), "usage: triage runs show") {
		t.Errorf("show without an id: %v", r.err)
	}
	if r := triage(t, "runs", "lst"); r.err == nil || !strings.Contains(r.err.Error(), `did you mean "list"`) {
		t.Errorf("runs lst: %v", r.err)
	}
	// An empty run log is not an error.
	if r := mustTriage(t, "runs", "list", "--runs-dir", filepath.Join(dir, "none")); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("empty log:\n%s", r.stdout)
	}
}

// TestRunsFromMLflow reads through the REST API: a fake server with one
// finished run.
func TestRunsFromMLflow(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	const runJSON = `{"info":{"run_id":"` + id + `","experiment_id":"3","run_name":"tj_9","status":"FINISHED",
		"start_time":1700000000000,"end_time":1700000065000,"artifact_uri":"mlflow-artifacts:/3/` + id + `/artifacts"},
		"data":{"metrics":[{"key":"val_accuracy","value":0.9,"timestamp":1700000060000,"step":2}],
		"params":[{"key":"seed","value":"42"}],"tags":[{"key":"mlflow.runName","value":"tj_9"},{"key":"job_id","value":"tj_9"}]}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/2.0/mlflow/experiments/get-by-name", "/api/2.0/mlflow/experiments/get":
			io.WriteString(w, `{"experiment":{"experiment_id":"3","name":"support","lifecycle_stage":"active"}}`)
		case "/api/2.0/mlflow/runs/search":
			b, _ := io.ReadAll(r.Body)
			if !strings.Contains(string(b), `"experiment_ids":["3"]`) {
				t.Errorf("runs/search body %s", b)
			}
			io.WriteString(w, `{"runs":[`+runJSON+`]}`)
		case "/api/2.0/mlflow/runs/get":
			io.WriteString(w, `{"run":`+runJSON+`}`)
		case "/api/2.0/mlflow/metrics/get-history":
			io.WriteString(w, `{"metrics":[{"key":"val_accuracy","value":0.9,"timestamp":1700000060000,"step":2},
				{"key":"val_accuracy","value":0.7,"timestamp":1700000030000,"step":1}]}`)
		case "/api/2.0/mlflow/artifacts/list":
			if r.URL.Query().Get("path") == "" {
				io.WriteString(w, `{"files":[{"path":"bundle","is_dir":true}]}`)
			} else {
				io.WriteString(w, `{"files":[{"path":"bundle/model.json","is_dir":false,"file_size":2}]}`)
			}
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	r := mustTriage(t, "runs", "list", "--model", "support", "--mlflow-uri", srv.URL)
	if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "1m5s") || !strings.Contains(r.stdout, "val_accuracy=0.9") {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = mustTriage(t, "runs", "show", id, "--mlflow-uri", srv.URL)
	for _, want := range []string{"model      support", "val_accuracy  0.9   2     2       0.7  0.9", "bundle/model.json", "job_id"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "mlflow.runName") {
		t.Errorf("show prints MLflow's own tags:\n%s", r.stdout)
	}
}
