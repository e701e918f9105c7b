package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/retrain"
)

// writeSupport writes a synthetic banking77/train.csv (text,category).
func writeSupport(t *testing.T, datasets string, seed uint64, shuffle bool) {
	t.Helper()
	words := map[string][]string{"card_arrival": {"card", "arrive", "post", "waiting", "delivery", "weeks"},
		"refund": {"refund", "money", "back", "merchant", "returned", "pending"}}
	labels := []string{"card_arrival", "refund"}
	rng := rand.New(rand.NewPCG(seed, 3))
	var b strings.Builder
	b.WriteString("text,category\n")
	for i := range 400 {
		l := labels[i%2]
		var ws []string
		for range 5 {
			ws = append(ws, words[l][rng.IntN(6)])
		}
		if shuffle {
			l = labels[rng.IntN(2)]
		}
		fmt.Fprintf(&b, "%s %d,%s\n", strings.Join(ws, " "), i, l)
	}
	if err := os.MkdirAll(filepath.Join(datasets, "banking77"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(datasets, "banking77", "train.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRetrainCommand: a first run promotes; a run on labels shuffled across
// classes is rejected by the gate with its reasons, the champion unchanged.
func TestRetrainCommand(t *testing.T) {
	trainedModel(t) // cleans TRIAGE_* from the environment
	dir := t.TempDir()
	datasets := filepath.Join(dir, "data")
	common := []string{"--registry", filepath.Join(dir, "registry"), "--snapshots", filepath.Join(dir, "snapshots"),
		"--work-dir", filepath.Join(dir, "work"), "--datasets", datasets, "--feedback-topic", "", "--updates-topic", "",
		"--retrain-max-epochs", "3", "--runs-dir", filepath.Join(dir, "runs"), "--json", "--log-level", "error"}
	retrainOnce := func() retrain.Result {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(context.Background(), append([]string{"retrain", "support"}, common...), &out, &errb); err != nil {
			t.Fatalf("triage retrain: %v\n%s", err, errb.String())
		}
		var res retrain.Result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("output %q: %v", out.String(), err)
		}
		return res
	}
	writeSupport(t, datasets, 1, false)
	if res := retrainOnce(); !res.Promoted || res.Version != "v1" || res.Trigger != retrain.TriggerManual {
		t.Fatalf("first run: %+v", res)
	}
	writeSupport(t, datasets, 2, true)
	res := retrainOnce()
	if res.Promoted || res.Gate.Passed || len(res.Gate.Reasons) == 0 {
		t.Fatalf("shuffled labels: %+v, want rejected with reasons", res)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"models", "show", "support", "--registry", filepath.Join(dir, "registry"),
		"--updates-topic", "", "--json"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"champion": "v1"`) || !strings.Contains(out.String(), `"passed": false`) {
		t.Errorf("models show after a rejection:\n%s", out.String())
	}
	// Both runs are in the local run log (no --mlflow-uri), each with its
	// trials as child runs.
	out.Reset()
	if err := run(context.Background(), []string{"runs", "list", "--model", "support", "--runs-dir", filepath.Join(dir, "runs"), "--json"},
		&out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"triage.version"`); n != 2 {
		t.Errorf("runs list has %d parent runs, want 2:\n%.2000s", n, out.String())
	}
}
