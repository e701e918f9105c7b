package tracking

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/trainer"
)

// A fine-tuning run's curve carries losses: each epoch's train_loss and
// val_loss reach the trial run beside its accuracy.
func TestRecorderLogsPerEpochLosses(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("text,label\n")
	for i := range 60 {
		l := []string{"billing", "shipping"}[i%2]
		fmt.Fprintf(&b, "%s words %d,%s\n", l, i, l)
	}
	data := filepath.Join(dir, "d.csv")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: filepath.Join(dir, "bundle"), Seed: 1, MaxEpochs: 2,
		LearningRates: []float64{0.1}, L2s: []float64{0}})
	if err != nil {
		t.Fatal(err)
	}
	// The curve as fine-tuning writes it.
	m := res.Manifest
	loss := func(v float64) *float64 { return &v }
	m.Metrics.Search = []bundle.Trial{{Params: map[string]any{"fine_tune": true}, BestEpoch: 2, ValAccuracy: 0.9,
		Curve: []bundle.EpochScore{{Epoch: 1, ValAccuracy: 0.8, TrainLoss: loss(0.7), ValLoss: loss(0.6)},
			{Epoch: 2, ValAccuracy: 0.9, TrainLoss: loss(0.4), ValLoss: loss(0.5)}}}}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(res.Dir, bundle.ManifestFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	l := NewLocal(filepath.Join(dir, "runs"), nil)
	rec := &Recorder{Tracker: l}
	ctx := context.Background()
	parent := rec.Record(ctx, "m", "v1", res.Dir, nil)
	if parent == "" {
		t.Fatal("nothing recorded")
	}
	runs, err := l.List(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var trial *RunRecord
	for i := range runs {
		if runs[i].ParentID == parent {
			full, err := l.Get(ctx, runs[i].ID)
			if err != nil {
				t.Fatal(err)
			}
			trial = &full
		}
	}
	if trial == nil {
		t.Fatal("no trial run")
	}
	for key, want := range map[string][]float64{"train_loss": {0.7, 0.4}, "val_loss": {0.6, 0.5}, "val_accuracy": {0.8, 0.9}} {
		hist := trial.Metrics[key]
		if len(hist) != 2 || hist[0].Value != want[0] || hist[1].Value != want[1] || hist[0].Step != 1 || hist[1].Step != 2 {
			t.Errorf("%s history %+v, want %v at epochs 1, 2", key, hist, want)
		}
	}
}
