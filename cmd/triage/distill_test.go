package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// train --distill-from a served bundle: the teacher runs through ONNX
// Runtime once, on every training text, for 2 temperatures x the 4 default
// grid points; the head is written and records the teacher; a teacher of
// another split, the knobs without a teacher, and a hinge
// search are refused with what to change.
func TestCLITrainDistill(t *testing.T) {
	data, teacher, _ := trainedModel(t)
	out := filepath.Join(t.TempDir(), "student")
	r := mustTriage(t, "train", "--data", data, "--text-column", "body", "--label-column", "queue", "--seed", "1",
		"--out", out, "--distill-from", teacher, "--distill-weight", "0.7", "--distill-temperature", "1,3")
	var got trainOutput
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("train output %q: %v", r.stdout, err)
	}
	if got.Validation.Accuracy == nil || *got.Validation.Accuracy < 0.8 {
		t.Errorf("distilled head: validation accuracy %v, want >= 0.8", got.Validation.Accuracy)
	}
	man := loadManifest(t, out)
	if man.HyperParams["distill_from"] != teacher || man.HyperParams["distill_weight"] != 0.7 ||
		(man.HyperParams["distill_temperature"] != 1.0 && man.HyperParams["distill_temperature"] != 3.0) ||
		len(man.Metrics.Search) != 8 || man.Graph.Kind != "linear" {
		t.Errorf("student bundle: kind %s, hyper params %v", man.Graph.Kind, man.HyperParams)
	}
	if !strings.Contains(r.stderr, "teacher probabilities") {
		t.Errorf("no progress logged for the teacher:\n%s", r.stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--seed", "2", "--distill-from", teacher}, "another split"},
		{[]string{"--seed", "1", "--distill-weight", "0.3"}, "apply only with --distill-from"},
		{[]string{"--seed", "1", "--distill-from", teacher, "--loss", "hinge"}, "soft targets need"},
		{[]string{"--seed", "1", "--distill-from", filepath.Join(t.TempDir(), "none")}, "--distill-from"},
	} {
		args := append([]string{"train", "--data", data, "--text-column", "body", "--label-column", "queue",
			"--out", filepath.Join(t.TempDir(), "m")}, tc.args...)
		if r := triage(t, args...); r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
			t.Errorf("triage %s: err = %v, want it to mention %q", strings.Join(tc.args, " "), r.err, tc.want)
		}
	}
}
