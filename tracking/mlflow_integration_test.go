//go:build mlflow

package tracking

// Tests against a real MLflow tracking server (PyPI mlflow, pinned in
// scripts/mlflow-local), started once for the package. Run with
//
//	go test -tags mlflow -count=1 ./tracking/
//
// The first run installs mlflow into .cache/mlflow-venv (about two minutes).
// TRIAGE_TEST_MLFLOW_URI points the tests at a server already running.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mlflowURI is set by TestMain for the package's tests.
var mlflowURI string

func TestMain(m *testing.M) {
	os.Exit(runWithMLflow(m))
}

func runWithMLflow(m *testing.M) int {
	if uri := os.Getenv("TRIAGE_TEST_MLFLOW_URI"); uri != "" {
		mlflowURI = uri
		return m.Run()
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "mlflow-local"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "triage-mlflow-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	var stdout bytes.Buffer
	start := exec.Command(script, "start", "--dir", dir)
	start.Stdout, start.Stderr = &stdout, os.Stderr
	if err := start.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "scripts/mlflow-local start: %v\n", err)
		return 1
	}
	defer func() {
		stop := exec.Command(script, "stop", "--dir", dir)
		stop.Stdout, stop.Stderr = os.Stderr, os.Stderr
		if err := stop.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "scripts/mlflow-local stop: %v\n", err)
		}
	}()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	mlflowURI = lines[len(lines)-1]
	return m.Run()
}

func uniqueName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func realClient(t *testing.T) *MLflow {
	t.Helper()
	c, err := NewMLflow(mlflowURI, MLflowOptions{RetryBudget: 10 * time.Second, User: "triage-test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRealMLflowRunsArtifactsAndRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := realClient(t)
	model := uniqueName("support")

	// A training job: a parent run, one child run per grid point.
	parent, err := c.StartRun(ctx, RunSpec{Experiment: model, Name: "tj_1", Tags: map[string]string{"job_id": "tj_1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.LogParams(ctx, map[string]string{"data_sha256": "abc", "seed": "42"}); err != nil {
		t.Fatal(err)
	}
	var children []Run
	for i, lr := range []string{"0.1", "0.2"} {
		child, err := c.StartRun(ctx, RunSpec{Experiment: model, Name: "lr=" + lr, ParentID: parent.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if err := child.LogParams(ctx, map[string]string{"learning_rate": lr, "loss": "logistic"}); err != nil {
			t.Fatal(err)
		}
		for step := int64(1); step <= 3; step++ {
			if err := child.LogMetric(ctx, "val_accuracy", 0.5+float64(step)/10+float64(i)/100, step); err != nil {
				t.Fatal(err)
			}
		}
		if err := child.End(ctx, StatusFinished); err != nil {
			t.Fatal(err)
		}
		children = append(children, child)
	}
	if err := children[0].LogParams(ctx, map[string]string{"learning_rate": "0.3"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("changing a param: err = %v, want ErrInvalid", err)
	}
	if err := parent.LogMetric(ctx, "val_loss", math.NaN(), 0); err != nil {
		t.Errorf("NaN metric: %v", err)
	}
	bundleDir := writeTree(t, map[string]string{"model.json": `{"name":"support"}`, "sub dir/features.bin": "0123456789"})
	if err := parent.LogArtifacts(ctx, bundleDir, "bundle"); err != nil {
		t.Fatal(err)
	}
	arts, err := c.ListArtifacts(ctx, parent.ID(), "bundle")
	if err != nil {
		t.Fatal(err)
	}
	if want := "[{bundle/model.json 18} {bundle/sub dir/features.bin 10}]"; fmt.Sprint(arts) != want {
		t.Errorf("artifacts = %v, want %s", arts, want)
	}
	if err := parent.SetTag(ctx, "triage.version", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := parent.End(ctx, StatusFinished); err != nil {
		t.Fatal(err)
	}

	// Read back.
	runs, err := c.List(ctx, model, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 {
		t.Fatalf("List = %d runs, want 3", len(runs))
	}
	got, err := c.Get(ctx, children[1].ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.ParentID != parent.ID() || got.Experiment != model || got.Status != StatusFinished || got.Params["learning_rate"] != "0.2" {
		t.Errorf("child = %+v", got)
	}
	hist := got.Metrics["val_accuracy"]
	if len(hist) != 3 || hist[0].Step != 1 || hist[2].Step != 3 || math.Abs(hist[2].Value-0.81) > 1e-9 {
		t.Errorf("val_accuracy history = %+v", hist)
	}
	p, err := c.Get(ctx, parent.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Latest("val_loss"); !ok || !math.IsNaN(v.Value) {
		t.Errorf("val_loss = %+v, %v; want NaN", v, ok)
	}
	if len(p.Artifacts) != 2 || p.Tags["mlflow.user"] != "triage-test" || p.Tags["job_id"] != "tj_1" {
		t.Errorf("parent = %+v", p)
	}
	if _, err := c.Get(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}

	// Registry mirror: v1 from the parent's bundle, champion on it.
	if err := c.RegisterVersion(ctx, model, "v1", parent.ID(), "bundle"); err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterVersion(ctx, model, "v1", parent.ID(), "bundle"); err != nil { // again: a no-op
		t.Fatal(err)
	}
	if err := c.SetAlias(ctx, model, "champion", "v1"); err != nil {
		t.Fatal(err)
	}
	champ, err := c.Alias(ctx, model, "champion")
	if err != nil {
		t.Fatal(err)
	}
	wantSource := "mlflow-artifacts:/" // then <exp>/<run>/artifacts/bundle
	if champ.Version != "1" || champ.TriageVersion != "v1" || champ.RunID != parent.ID() ||
		!strings.HasPrefix(champ.Source, wantSource) || !strings.HasSuffix(champ.Source, parent.ID()+"/artifacts/bundle") {
		t.Errorf("champion = %+v", champ)
	}

	// A second training run, registered as v2 by another process (a fresh
	// client: no cached mapping), promoted, then rolled back.
	run2, err := c.StartRun(ctx, RunSpec{Experiment: model, Name: "tj_2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := run2.LogArtifacts(ctx, bundleDir, "bundle"); err != nil {
		t.Fatal(err)
	}
	other := realClient(t)
	if err := other.RegisterVersion(ctx, model, "v2", run2.ID(), "bundle"); err != nil {
		t.Fatal(err)
	}
	if err := other.RegisterVersion(ctx, model, "v1", parent.ID(), "bundle"); err != nil { // found by tag, not duplicated
		t.Fatal(err)
	}
	if mv, err := other.FindVersion(ctx, model, "v1"); err != nil || mv.Version != "1" {
		t.Errorf("FindVersion(v1) = %+v, %v; want MLflow version 1", mv, err)
	}
	for _, step := range []struct{ alias, version, wantMLflow string }{
		{"champion", "v2", "2"}, // promote
		{"champion", "v1", "1"}, // roll back
		{"challenger", "v2", "2"},
	} {
		if err := other.SetAlias(ctx, model, step.alias, step.version); err != nil {
			t.Fatal(err)
		}
		mv, err := c.Alias(ctx, model, step.alias)
		if err != nil {
			t.Fatal(err)
		}
		if mv.Version != step.wantMLflow || mv.TriageVersion != step.version {
			t.Errorf("after %s -> %s: alias points at %+v", step.alias, step.version, mv)
		}
	}
	if err := c.RemoveAlias(ctx, model, "challenger"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveAlias(ctx, model, "challenger"); err != nil { // already gone: a no-op
		t.Errorf("removing an absent alias: %v", err)
	}
	if _, err := c.Alias(ctx, model, "challenger"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed alias: err = %v, want ErrNotFound", err)
	}
	if err := c.SetAlias(ctx, model, "champion", "v3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("alias to an unmirrored version: err = %v, want ErrNotFound", err)
	}
	if err := run2.End(ctx, StatusFailed); err != nil {
		t.Fatal(err)
	}
}

func TestRealMLflowExperimentCreatedOnce(t *testing.T) {
	ctx := context.Background()
	model := uniqueName("race")
	// Two processes starting the first run of a model at once.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := realClient(t).StartRun(ctx, RunSpec{Experiment: model})
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	runs, err := realClient(t).List(ctx, model, 0)
	if err != nil || len(runs) != 2 {
		t.Errorf("List = %d runs, %v; want 2 in one experiment", len(runs), err)
	}
	if runs, err := realClient(t).List(ctx, uniqueName("absent"), 0); err != nil || len(runs) != 0 {
		t.Errorf("List(absent) = %v, %v; want none", runs, err)
	}
}
