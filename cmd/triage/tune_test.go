package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/internal/minilm"
)

type tuneOutput struct {
	Bundle string `json:"bundle"`
	Best   struct {
		Source      string         `json:"source"`
		Params      map[string]any `json:"params"`
		Epochs      int            `json:"epochs"`
		ValAccuracy *float64       `json:"val_accuracy"`
	} `json:"best"`
	Defaults struct {
		ValAccuracy *float64 `json:"val_accuracy"`
	} `json:"defaults"`
	Trials          int `json:"trials"`
	Pruned          int `json:"pruned"`
	StoppedByBudget int `json:"stopped_by_budget"`
	Holdout         struct {
		N         int                `json:"n"`
		TrainOnly map[string]float64 `json:"train_only"`
		Refit     map[string]float64 `json:"refit"`
		Defaults  map[string]float64 `json:"defaults"`
	} `json:"holdout"`
	Rows    map[string]int `json:"rows"`
	Seconds float64        `json:"seconds"`
}

func TestCLITune(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	data := syntheticCSV(t, dir)
	out := filepath.Join(dir, "tuned")
	// One bracket of 9 on rungs 1, 3, 9: 6 pruned at rung 0, 2 at rung 1.
	r := mustTriage(t, "tune", "--data", data, "--text-column", "body", "--label-column", "queue", "--out", out,
		"--trials", "9", "--max-epochs", "9", "--workers", "2", "--seed", "1")
	var got tuneOutput
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.stdout)
	}
	if got.Bundle != out || got.Trials != 9 || got.Pruned != 8 || got.StoppedByBudget != 0 || got.Best.ValAccuracy == nil ||
		got.Defaults.ValAccuracy == nil || got.Best.Params["loss"] == nil || got.Best.Epochs < 1 {
		t.Errorf("summary %+v", got)
	}
	// 180 rows, 60 per queue: 6 per queue held out, then 5 of the other 54 for validation.
	if got.Holdout.N != 18 || got.Rows["train"] != 147 || got.Rows["validation"] != 15 || got.Holdout.Refit["accuracy"] == 0 {
		t.Errorf("rows %v holdout %+v", got.Rows, got.Holdout)
	}
	if !strings.Contains(r.stderr, `"message":"rung done"`) {
		t.Errorf("no per-rung progress on stderr:\n%s", r.stderr)
	}

	// The bundle records every trial, and its validation split is the
	// hold-out slice: eval recomputes the refit's hold-out figure through
	// ONNX Runtime.
	man := loadManifest(t, out)
	if len(man.Metrics.Search) != 9+4 || man.HyperParams["refit"] != "train+validation" {
		t.Errorf("manifest: %d trials, hyper_params %v", len(man.Metrics.Search), man.HyperParams)
	}
	ev := decodeEval(t, mustTriage(t, "eval", "--model", out, "--data", data, "--text-column", "body", "--label-column", "queue",
		"--split", "validation", "--json").stdout)
	if *ev.N != got.Holdout.N || *ev.Accuracy != got.Holdout.Refit["accuracy"] {
		t.Errorf("eval --split validation: n=%d accuracy=%v; tune's hold-out refit: n=%d accuracy=%v", *ev.N, *ev.Accuracy, got.Holdout.N, got.Holdout.Refit["accuracy"])
	}

	wantErr(t, []string{"--holdout-fraction"}, "tune", "--data", data, "--out", out, "--holdout-fraction", "0.9")
	wantErr(t, []string{"unexpected arguments"}, "tune", "--data", data, "--out", out, "extra")
}

// tune --encoder searches the embedding's scale too and writes a hybrid
// bundle that serves what it measured.
func TestCLITuneEncoder(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	enc := filepath.Join(dir, "minilm")
	mustTriage(t, "encoder", "convert", "--checkpoint", minilm.Checkpoint(), "--out", enc)
	data := syntheticCSV(t, dir)
	out := filepath.Join(dir, "tuned")
	r := mustTriage(t, "tune", "--data", data, "--text-column", "body", "--label-column", "queue", "--out", out,
		"--trials", "4", "--max-epochs", "3", "--seed", "2", "--encoder", enc)
	var got tuneOutput
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	man := loadManifest(t, out)
	if man.Graph.Kind != bundle.KindHybrid || man.Encoder == nil || man.HyperParams["encoder_scale"] == nil {
		t.Fatalf("bundle kind %q encoder %+v hyper_params %v", man.Graph.Kind, man.Encoder, man.HyperParams)
	}
	// The defaults' grid tries scales 1 and 3 (8 trials); each search trial
	// records the scale it drew.
	if len(man.Metrics.Search) != 4+8 {
		t.Fatalf("%d trials, want 12", len(man.Metrics.Search))
	}
	for _, tr := range man.Metrics.Search {
		if sc, ok := tr.Params["encoder_scale"].(float64); !ok || sc <= 0 {
			t.Errorf("trial params %v lack an encoder scale", tr.Params)
		}
	}
	ev := decodeEval(t, mustTriage(t, "eval", "--model", out, "--data", data, "--text-column", "body", "--label-column", "queue",
		"--split", "validation", "--json").stdout)
	if *ev.Accuracy != got.Holdout.Refit["accuracy"] {
		t.Errorf("eval --split validation accuracy %v, tune's hold-out refit %v", *ev.Accuracy, got.Holdout.Refit["accuracy"])
	}
}
