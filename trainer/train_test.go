package trainer

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/bundle"
)

// synthetic writes a small labelled corpus where each label has its own
// vocabulary plus shared noise words, so a working trainer must separate
// them well but a broken one cannot.
func synthetic(t *testing.T, name string, textCol, labelCol string, jsonl bool) string {
	t.Helper()
	topics := map[string][]string{
		"billing":  {"invoice", "charge", "refund", "payment", "bill", "overcharged"},
		"shipping": {"parcel", "delivery", "courier", "tracking", "shipped", "arrive"},
		"account":  {"password", "login", "locked", "username", "reset", "signin"},
	}
	noise := []string{"please", "help", "my", "the", "is", "not", "today", "why", "hello"}
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	if !jsonl {
		fmt.Fprintf(&b, "%s,other,%s\n", labelCol, textCol)
	}
	for i := range 300 {
		label := []string{"billing", "shipping", "account"}[i%3]
		var words []string
		for range 6 {
			if rng.IntN(2) == 0 {
				words = append(words, topics[label][rng.IntN(6)])
			} else {
				words = append(words, noise[rng.IntN(len(noise))])
			}
		}
		text := strings.Join(words, " ")
		if jsonl {
			fmt.Fprintf(&b, "{%q:%q,%q:%q}\n", textCol, text, labelCol, label)
		} else {
			fmt.Fprintf(&b, "%s,x,\"%s\"\n", label, text)
		}
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTrainAnyCSV(t *testing.T) {
	for _, tc := range []struct {
		file, text, label string
		jsonl             bool
	}{
		{"tickets.csv", "body", "queue", false},
		{"tickets.jsonl", "message", "intent", true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data := synthetic(t, tc.file, tc.text, tc.label, tc.jsonl)
			out := filepath.Join(t.TempDir(), "model")
			res, err := Train(context.Background(), Options{
				DataPath: data, TextColumn: tc.text, LabelColumn: tc.label, OutDir: out, Seed: 3,
				LearningRates: []float64{0.2}, L2s: []float64{0}, MaxEpochs: 8,
			})
			if err != nil {
				t.Fatal(err)
			}
			m := res.Manifest
			if acc := m.Metrics.Validation.Accuracy; acc < 0.9 {
				t.Errorf("validation accuracy %.3f < 0.9", acc)
			}
			if strings.Join(m.Labels, ",") != "account,billing,shipping" || m.Name != "model" {
				t.Errorf("labels %v name %q", m.Labels, m.Name)
			}
			if m.Training.Rows != 300 || m.Training.ValRows != 30 || len(m.Training.DataSHA256) != 64 {
				t.Errorf("training record %+v", m.Training)
			}
			if m.HyperParams["epochs"].(int) < 1 || len(m.Metrics.Search) != 1 {
				t.Errorf("hyper params %v search %v", m.HyperParams, m.Metrics.Search)
			}
			b, err := bundle.Load(out)
			if err != nil {
				t.Fatalf("load written bundle: %v", err)
			}
			if b.Manifest.Version != m.Version || b.Featurizer.Vocab().Size() != m.Graph.NumFeatures {
				t.Errorf("reloaded manifest differs")
			}
		})
	}
}

func TestTrainDeterministic(t *testing.T) {
	data := synthetic(t, "d.csv", "text", "label", false)
	var models [2][]byte
	for i := range models {
		out := filepath.Join(t.TempDir(), "m")
		_, err := Train(context.Background(), Options{DataPath: data, OutDir: out, Seed: 9, Version: "v1",
			LearningRates: []float64{0.1, 0.2}, MaxEpochs: 4})
		if err != nil {
			t.Fatal(err)
		}
		if models[i], err = os.ReadFile(filepath.Join(out, bundle.ModelFile)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(models[0], models[1]) {
		t.Errorf("same data and seed gave different model.onnx bytes")
	}
}

func TestTrainErrors(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.csv")
	os.WriteFile(one, []byte("text,label\na,x\nb,x\nc,x\n"), 0o644)
	cases := []struct {
		opts Options
		want string
	}{
		{Options{OutDir: dir + "/m"}, "--data"},
		{Options{DataPath: one}, "--out"},
		{Options{DataPath: one, OutDir: dir + "/m"}, "need at least 2"},
		{Options{DataPath: one, OutDir: dir + "/m", LabelColumn: "category"}, `no column "category"`},
		{Options{DataPath: one, OutDir: dir + "/m", Losses: []string{"mse"}}, `--loss "mse"`},
		{Options{DataPath: one, OutDir: dir + "/m", ValFraction: 0.9}, "--val-fraction"},
	}
	for _, c := range cases {
		_, err := Train(context.Background(), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Train(%+v) error %v, want it to mention %q", c.opts, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := synthetic(t, "d.csv", "text", "label", false)
	if _, err := Train(ctx, Options{DataPath: data, OutDir: dir + "/c"}); err == nil {
		t.Error("cancelled context: no error")
	}
	if _, err := os.Stat(dir + "/c"); !os.IsNotExist(err) {
		t.Error("cancelled training left a bundle behind")
	}
}
