package inference

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/triage-ml/triage/bundle"
)

// Predictions abstain exactly when their score is under the bundle's
// threshold, carry the score in their signals, and never abstain without a
// rule (bundles from before it). The flag reaches the JSON response.
func TestPredictAbstained(t *testing.T) {
	dir := trainedBundle(t)
	texts := []string{"my card has not arrived after two weeks", "I want a refund of my money", "the weather in paris",
		"what is the euro exchange rate", "unrelated words entirely", "card refund euro stolen", ""}
	man := func() bundle.Manifest {
		b, err := bundle.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return b.Manifest
	}
	if a := man().Abstain; a == nil || a.Score != bundle.ScoreCalibrated {
		t.Fatalf("trained bundle's rule: %+v", a)
	}
	predict := func(edit func(*bundle.Manifest)) []Prediction {
		m := man()
		edit(&m)
		raw, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		model, err := Open(dir, ModelOptions{Session: SessionOptions{PoolSize: 1, IntraOpThreads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		defer model.Close()
		ps, err := model.Predict(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	// A threshold between the texts' scores: some abstain, some do not.
	base := predict(func(*bundle.Manifest) {})
	lo, hi := float64(base[0].Signals.AbstainScore), float64(base[0].Signals.AbstainScore)
	for _, p := range base {
		if p.Signals.AbstainScore != p.Signals.Calibrated {
			t.Errorf("%q: abstain score %v, want the calibrated probability %v", p.Label, p.Signals.AbstainScore, p.Signals.Calibrated)
		}
		lo, hi = min(lo, float64(p.Signals.AbstainScore)), max(hi, float64(p.Signals.AbstainScore))
	}
	threshold := (lo + hi) / 2
	ps := predict(func(m *bundle.Manifest) { m.Abstain.Threshold = threshold })
	var n int
	for i, p := range ps {
		want := float64(p.Signals.AbstainScore) < threshold
		if p.Abstained != want {
			t.Errorf("%q: abstained %v with score %v and threshold %v", texts[i], p.Abstained, p.Signals.AbstainScore, threshold)
		}
		if p.Label != base[i].Label {
			t.Errorf("%q: label %q changed to %q by abstention; the best guess stays", texts[i], base[i].Label, p.Label)
		}
		raw, _ := json.Marshal(p)
		var resp map[string]any
		if err := json.Unmarshal(raw, &resp); err != nil {
			t.Fatal(err)
		}
		if _, has := resp["abstained"]; has != p.Abstained {
			t.Errorf("response %s: abstained field present %v, want %v", raw, has, p.Abstained)
		}
		if p.Abstained {
			n++
		}
	}
	if n == 0 || n == len(texts) {
		t.Errorf("%d of %d abstained at a threshold between their scores", n, len(texts))
	}
	for _, p := range predict(func(m *bundle.Manifest) { m.Abstain = nil }) {
		if p.Abstained {
			t.Errorf("a bundle without a rule abstained: %+v", p)
		}
	}
}
