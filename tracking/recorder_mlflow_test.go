//go:build mlflow

package tracking

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/trainer"
)

// A trained bundle recorded against a real MLflow server: the experiment,
// a parent run with params and metrics, one child run per trial, the bundle
// as an artifact, a registered model version, and the champion alias
// following a promotion through MirrorMoves.
func TestRealMLflowRecorder(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("text,label\n")
	words := map[string][]string{"billing": {"invoice", "refund", "charge"}, "shipping": {"parcel", "courier", "tracking"}}
	for i := range 90 {
		l := []string{"billing", "shipping"}[i%2]
		fmt.Fprintf(&b, "%s %s please %d,%s\n", words[l][i%3], words[l][(i+1)%3], i, l)
	}
	data := filepath.Join(dir, "d.csv")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	model := uniqueName("rec")
	res, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: filepath.Join(dir, "bundle"), Name: model,
		Seed: 1, MaxEpochs: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := realClient(t)
	rec := &Recorder{Tracker: c, Mirror: c}
	ctx := context.Background()
	parent := rec.Record(ctx, model, "v1", res.Dir, map[string]string{"trigger": "manual"})
	if parent == "" {
		t.Fatal("nothing recorded")
	}
	runs, err := c.List(ctx, model, 100)
	if err != nil {
		t.Fatal(err)
	}
	children, curves := 0, 0
	for _, r := range runs {
		if r.ParentID == parent {
			children++
			if _, ok := r.Latest("val_accuracy"); !ok || len(r.Params) == 0 {
				t.Errorf("trial run %s: params %v metrics %v", r.Name, r.Params, r.Metrics)
			}
			// Per-epoch metrics: the validation score at every epoch trained.
			full, err := c.Get(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			hist := full.Metrics["val_accuracy"]
			for i := 1; i < len(hist); i++ {
				if hist[i].Step != hist[i-1].Step+1 {
					t.Errorf("trial run %s: val_accuracy steps %v are not consecutive epochs", r.Name, hist)
				}
			}
			if len(hist) > 1 {
				curves++
			}
			if _, ok := full.Latest("best_val_accuracy"); !ok {
				t.Errorf("trial run %s has no best_val_accuracy", r.Name)
			}
		}
	}
	if curves == 0 {
		t.Error("no trial run has a per-epoch val_accuracy history")
	}
	if children != len(res.Manifest.Metrics.Search) || children == 0 {
		t.Errorf("%d trial runs, want %d", children, len(res.Manifest.Metrics.Search))
	}
	p, err := c.Get(ctx, parent)
	if err != nil {
		t.Fatal(err)
	}
	if acc, ok := p.Latest("val_accuracy"); !ok || acc.Value != res.Manifest.Metrics.Validation.Accuracy || p.Tags["trigger"] != "manual" ||
		p.Params["learning_rate"] == "" || p.Status != StatusFinished {
		t.Errorf("parent run %+v", p)
	}
	arts, err := c.ListArtifacts(ctx, parent, "bundle")
	if err != nil || len(arts) == 0 {
		t.Errorf("bundle artifact: %v %v", arts, err)
	}
	mv, err := c.FindVersion(ctx, model, "v1")
	if err != nil || mv.RunID != parent {
		t.Fatalf("model version: %+v %v", mv, err)
	}
	MirrorMoves(c, nil)(ctx, registry.Move{Model: model, Alias: registry.Champion, To: "v1", Kind: registry.KindPromote})
	if al, err := c.Alias(ctx, model, registry.Champion); err != nil || al.TriageVersion != "v1" {
		t.Errorf("champion alias: %+v %v", al, err)
	}
}
