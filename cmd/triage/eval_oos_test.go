package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// eval --oos-label on a tiny fixture: the in-scope figures are those of the
// same rows without the out-of-scope ones, and the out-of-scope recall at
// the model's threshold is the share of those texts predict flags.
func TestCLIEvalOOS(t *testing.T) {
	cleanEnv(t)
	data, model, _ := trainedModel(t)
	man := loadManifest(t, model)
	if man.Abstain == nil {
		t.Fatal("the fixture model has no abstention rule")
	}
	raw, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	oosTexts := []string{"what is the weather in paris tomorrow", "recommend a good pizza recipe", "who won the football match",
		"zebra giraffe elephant", "sing me a song about the sea", "how tall is mount everest"}
	var b strings.Builder
	b.Write(raw)
	for i, txt := range oosTexts {
		fmt.Fprintf(&b, "%d,none,\"%s\",chat\n", 1000+i, txt)
	}
	mixed := writeFile(t, t.TempDir(), "mixed.csv", b.String())

	r := mustTriage(t, "eval", "--model", model, "--data", mixed, "--text-column", "body", "--label-column", "queue", "--oos-label", "none", "--json")
	var got struct {
		N        int     `json:"n"`
		Accuracy float64 `json:"accuracy"`
		OOS      struct {
			Label           string   `json:"label"`
			InScope         int      `json:"in_scope"`
			OutOfScope      int      `json:"out_of_scope"`
			Score           string   `json:"score"`
			Threshold       *float64 `json:"threshold"`
			TargetPrecision float64  `json:"target_precision"`
			AtThreshold     oosPoint `json:"at_threshold"`
			Curve           []oosPoint
		} `json:"oos"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("eval --oos-label output %q: %v", r.stdout, err)
	}
	o := got.OOS
	if o.Label != "none" || o.InScope != 180 || o.OutOfScope != len(oosTexts) || got.N != 180 {
		t.Fatalf("oos section %+v (n %d): want 180 in-scope and %d out-of-scope rows", o, got.N, len(oosTexts))
	}
	if o.Threshold == nil || *o.Threshold != man.Abstain.Threshold || o.Score != man.Abstain.Score || o.TargetPrecision != man.Abstain.TargetPrecision {
		t.Errorf("oos rule %v %q %v, the model's %+v", o.Threshold, o.Score, o.TargetPrecision, man.Abstain)
	}
	// In-scope accuracy and macro-F1 are those of the rows without "none".
	plain := decodeEval(t, mustTriage(t, "eval", "--model", model, "--data", data, "--text-column", "body", "--label-column", "queue", "--json").stdout)
	if got.Accuracy != *plain.Accuracy {
		t.Errorf("accuracy with --oos-label %v, on the in-scope file alone %v", got.Accuracy, *plain.Accuracy)
	}
	// OOS recall at the threshold is the share predict flags abstained.
	preds := decodePredict(t, mustTriage(t, append([]string{"predict", "--model", model}, oosTexts...)...).stdout, len(oosTexts))
	var abstained int
	for _, p := range preds {
		if p.Abstained {
			abstained++
		}
	}
	at := o.AtThreshold
	if want := float64(abstained) / float64(len(oosTexts)); math.Abs(at.OOSRecall-want) > 1e-12 {
		t.Errorf("oos_recall %v, predict flags %d of %d", at.OOSRecall, abstained, len(oosTexts))
	}
	if at.Accuracy > at.SelectiveAccuracy+1e-12 || math.Abs(at.Accuracy-at.SelectiveAccuracy*at.Coverage) > 1e-9 {
		t.Errorf("at threshold %+v: accuracy must be selective accuracy x coverage", at)
	}
	if len(o.Curve) < 2 || o.Curve[0].Coverage != 1 || o.Curve[0].OOSRecall != 0 || o.Curve[0].Accuracy != got.Accuracy {
		t.Errorf("curve %+v: want a first point accepting everything at the plain accuracy", o.Curve)
	}
	for i := 1; i < len(o.Curve); i++ {
		if o.Curve[i].Threshold < o.Curve[i-1].Threshold || o.Curve[i].Coverage > o.Curve[i-1].Coverage || o.Curve[i].OOSRecall < o.Curve[i-1].OOSRecall {
			t.Errorf("curve not monotone at %d: %+v then %+v", i, o.Curve[i-1], o.Curve[i])
		}
	}

	text := mustTriage(t, "eval", "--model", model, "--data", mixed, "--text-column", "body", "--label-column", "queue", "--oos-label", "none").stdout
	for _, want := range []string{`out of scope (label "none")`, "abstentions count as errors", "selective accuracy", "OOS recall"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	wantErr(t, []string{"--oos-label", "billing", "trained on"}, "eval", "--model", model, "--data", mixed, "--text-column", "body",
		"--label-column", "queue", "--oos-label", "billing")
	wantErr(t, []string{"--oos-label", "0 out-of-scope rows"}, "eval", "--model", model, "--data", data, "--text-column", "body",
		"--label-column", "queue", "--oos-label", "none")
	// Without --oos-label the out-of-scope rows are unknown labels, as before.
	wantErr(t, []string{"none", "not one the model knows"}, "eval", "--model", model, "--data", filepath.Clean(mixed), "--text-column", "body",
		"--label-column", "queue")
}

type oosPoint struct {
	Threshold         float64 `json:"threshold"`
	Accuracy          float64 `json:"in_scope_accuracy"`
	SelectiveAccuracy float64 `json:"selective_accuracy"`
	Coverage          float64 `json:"in_scope_coverage"`
	OOSRecall         float64 `json:"oos_recall"`
}
