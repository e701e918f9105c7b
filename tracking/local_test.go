package tracking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/registry"
)

// writeTree creates files (slash paths -> content) under a fresh folder.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLocalRunRecordsEverything(t *testing.T) {
	ctx := context.Background()
	l := NewLocal(filepath.Join(t.TempDir(), "runs"), nil)
	parent, err := l.StartRun(ctx, RunSpec{Experiment: "support", Name: "tj_1", Tags: map[string]string{"job_id": "tj_1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.LogParams(ctx, map[string]string{"data_sha256": "abc", "seed": "42"}); err != nil {
		t.Fatal(err)
	}
	// Trials log to their own child runs from parallel goroutines, and to
	// the parent too: every write must land.
	var wg sync.WaitGroup
	children := make([]Run, 2)
	for i := range children {
		child, err := l.StartRun(ctx, RunSpec{Experiment: "support", Name: fmt.Sprintf("trial-%d", i), ParentID: parent.ID()})
		if err != nil {
			t.Fatal(err)
		}
		children[i] = child
		wg.Go(func() {
			for step := int64(1); step <= 5; step++ {
				if err := child.LogMetric(ctx, "val_accuracy", float64(step)/10+float64(i), step); err != nil {
					t.Error(err)
				}
				if err := parent.LogMetric(ctx, fmt.Sprintf("trial_%d_val_accuracy", i), float64(step), step); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, c := range children {
		if err := c.End(ctx, StatusFinished); err != nil {
			t.Fatal(err)
		}
	}
	if err := parent.SetTag(ctx, "version", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := parent.LogMetric(ctx, "val_loss", math.NaN(), 0); err != nil {
		t.Fatal(err)
	}
	bundleDir := writeTree(t, map[string]string{"model.json": `{"v":1}`, "sub/features.bin": "0123456789"})
	if err := parent.LogArtifacts(ctx, bundleDir, "bundle"); err != nil {
		t.Fatal(err)
	}
	// The trainer removes its working copy once registered: the run keeps its own.
	if err := os.RemoveAll(bundleDir); err != nil {
		t.Fatal(err)
	}
	if err := parent.End(ctx, StatusFinished); err != nil {
		t.Fatal(err)
	}

	got, err := l.Get(ctx, parent.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Experiment != "support" || got.Name != "tj_1" || got.Status != StatusFinished || got.EndTime == nil || got.ParentID != "" {
		t.Errorf("parent record = %+v", got)
	}
	if got.Params["seed"] != "42" || got.Tags["job_id"] != "tj_1" || got.Tags["version"] != "v1" {
		t.Errorf("params %v, tags %v", got.Params, got.Tags)
	}
	for i := range 2 {
		if n := len(got.Metrics[fmt.Sprintf("trial_%d_val_accuracy", i)]); n != 5 {
			t.Errorf("parent trial %d metric: %d points, want 5", i, n)
		}
	}
	if p, ok := got.Latest("val_loss"); !ok || !math.IsNaN(p.Value) {
		t.Errorf("val_loss = %+v, %v; want NaN kept through JSON", p, ok)
	}
	wantArtifacts := []Artifact{{Path: "bundle/model.json", Size: 7}, {Path: "bundle/sub/features.bin", Size: 10}}
	if fmt.Sprint(got.Artifacts) != fmt.Sprint(wantArtifacts) {
		t.Errorf("artifacts = %v, want %v", got.Artifacts, wantArtifacts)
	}
	b, err := os.ReadFile(filepath.Join(l.Dir(), parent.ID(), "artifacts", "bundle", "sub", "features.bin"))
	if err != nil || string(b) != "0123456789" {
		t.Errorf("stored artifact = %q, %v", b, err)
	}

	child, err := l.Get(ctx, children[1].ID())
	if err != nil {
		t.Fatal(err)
	}
	if child.ParentID != parent.ID() || len(child.Metrics["val_accuracy"]) != 5 {
		t.Fatalf("child = %+v", child)
	}
	for i, p := range child.Metrics["val_accuracy"] {
		if p.Step != int64(i+1) || math.Abs(p.Value-(float64(i+1)/10+1)) > 1e-12 || p.Time.IsZero() {
			t.Errorf("child point %d = %+v", i, p)
		}
	}
	if last, _ := child.Latest("val_accuracy"); last.Step != 5 {
		t.Errorf("latest = %+v", last)
	}
}

func TestLocalParamsCannotChange(t *testing.T) {
	ctx := context.Background()
	r, err := NewLocal(t.TempDir(), nil).StartRun(ctx, RunSpec{Experiment: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LogParams(ctx, map[string]string{"lr": "0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.LogParams(ctx, map[string]string{"lr": "0.1", "l2": "0"}); err != nil {
		t.Errorf("same value again: %v", err)
	}
	if err := r.LogParams(ctx, map[string]string{"lr": "0.2"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("changed param: err = %v, want ErrInvalid", err)
	}
	if err := r.End(ctx, "DONE"); !errors.Is(err, ErrInvalid) {
		t.Errorf("End(DONE) = %v, want ErrInvalid", err)
	}
	if err := r.LogArtifacts(ctx, t.TempDir(), "../escape"); !errors.Is(err, ErrInvalid) {
		t.Errorf("artifact path ../escape: err = %v, want ErrInvalid", err)
	}
}

func TestLocalListAndGet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := NewLocal(dir, nil)
	if runs, err := NewLocal(filepath.Join(dir, "absent"), nil).List(ctx, "", 0); err != nil || len(runs) != 0 {
		t.Fatalf("List of a missing folder = %v, %v; want none", runs, err)
	}
	var ids []string
	for i, exp := range []string{"a", "b", "a", "a"} {
		r, err := l.StartRun(ctx, RunSpec{Experiment: exp, Name: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID())
		time.Sleep(2 * time.Millisecond) // distinct start times, so the order is defined
	}
	// A damaged record is skipped, not fatal.
	if err := os.MkdirAll(filepath.Join(dir, "deadbeef"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deadbeef", runFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := l.List(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].ID != ids[3] || runs[1].ID != ids[2] || runs[2].ID != ids[0] {
		t.Errorf("List(a) = %v, want newest first %v %v %v", names(runs), ids[3], ids[2], ids[0])
	}
	if runs, _ := l.List(ctx, "", 2); len(runs) != 2 || runs[0].ID != ids[3] {
		t.Errorf("List(all, 2) = %v", names(runs))
	}
	if runs, _ := l.List(ctx, "", 0); len(runs) != 4 {
		t.Errorf("List(all) = %d runs, want 4", len(runs))
	}
	if _, err := l.Get(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := l.Get(ctx, "../etc"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get(../etc) = %v, want ErrInvalid", err)
	}
	// run.json is plain JSON other tools can read.
	b, err := os.ReadFile(filepath.Join(dir, ids[0], runFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || raw["status"] != StatusRunning || raw["experiment"] != "a" {
		t.Errorf("run.json = %s (%v)", b, err)
	}
}

func names(rs []RunRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID+"("+r.Experiment+")")
	}
	return out
}

// fakeMirror records the calls MirrorMove makes.
type fakeMirror struct{ calls []string }

func (f *fakeMirror) RegisterVersion(_ context.Context, model, version, runID, path string) error {
	f.calls = append(f.calls, "register "+model+" "+version+" "+runID+" "+path)
	return nil
}

func (f *fakeMirror) SetAlias(_ context.Context, model, alias, version string) error {
	f.calls = append(f.calls, "set "+model+" "+alias+" "+version)
	return nil
}

func (f *fakeMirror) RemoveAlias(_ context.Context, model, alias string) error {
	f.calls = append(f.calls, "remove "+model+" "+alias)
	return nil
}

func TestMirrorMove(t *testing.T) {
	ctx := context.Background()
	m := &fakeMirror{}
	for _, mv := range []registry.Move{
		{Model: "support", Alias: registry.Champion, To: "v2", Kind: registry.KindPromote},
		{Model: "support", Alias: registry.Champion, From: "v2", To: "v1", Kind: registry.KindRollback},
		{Model: "support", Alias: "challenger", To: "v3", Kind: registry.KindSet},
		{Model: "support", Alias: "challenger", From: "v3", Kind: registry.KindRemove},
		{}, // a no-op move records nothing
	} {
		if err := MirrorMove(ctx, m, mv); err != nil {
			t.Fatal(err)
		}
	}
	want := "[set support champion v2 set support champion v1 set support challenger v3 remove support challenger]"
	if fmt.Sprint(m.calls) != want {
		t.Errorf("calls = %v, want %s", m.calls, want)
	}
	if err := MirrorMove(ctx, m, registry.Move{Model: "m", Alias: "a", To: "v1", Kind: "teleport"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestOpen(t *testing.T) {
	tr, mirror, err := Open("", t.TempDir(), MLflowOptions{})
	if _, ok := tr.(*Local); !ok || mirror != nil || err != nil {
		t.Errorf("Open without a URI = %T, %v, %v; want *Local and no mirror", tr, mirror, err)
	}
	tr, mirror, err = Open("http://127.0.0.1:5000", "", MLflowOptions{})
	if _, ok := tr.(*MLflow); !ok || mirror == nil || err != nil {
		t.Errorf("Open(uri) = %T, %v, %v; want *MLflow as both", tr, mirror, err)
	}
	if _, _, err := Open("127.0.0.1:5000", "", MLflowOptions{}); err == nil {
		t.Error("Open accepted a URI without a scheme")
	}
}
