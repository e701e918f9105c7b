//go:build finetune

// The fine-tuning suite runs real PyTorch (scripts/finetune-env.sh makes the
// environment; scripts/test.sh runs it with -tags finetune): a few steps on a
// Banking77 slice, data-parallel over 2 CPU processes (torchrun, gloo),
// converted by the Go converter and served through ONNX Runtime.
package finetune_test

import (
	"context"
	"encoding/csv"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/finetune"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/trainer"
)

type env struct {
	root, python, checkpoint, data string
}

func setup(t *testing.T) env {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	python := os.Getenv("TRIAGE_PYTHON")
	if python == "" {
		python = filepath.Join(root, finetune.DefaultPython)
	}
	encDir := os.Getenv("TRIAGE_ENCODER_DIR")
	if encDir == "" {
		t.Fatal("TRIAGE_ENCODER_DIR: the converted MiniLM folder (scripts/build-encoder.sh) is needed for its checkpoint")
	}
	m, err := encoderdir.Read(encDir)
	if err != nil {
		t.Fatal(err)
	}
	return env{root: root, python: python, checkpoint: m.Source, data: slice(t, root)}
}

// slice writes 40 texts of each of the first 6 Banking77 intents.
func slice(t *testing.T, root string) string {
	t.Helper()
	src := os.Getenv("TRIAGE_DATA_DIR")
	if src == "" {
		src = filepath.Join(root, "..", "shared", "data")
	}
	in, err := os.Open(filepath.Join(src, "banking77", "train.csv"))
	if err != nil {
		t.Fatalf("training data (TRIAGE_DATA_DIR): %v", err)
	}
	defer in.Close()
	rows, err := csv.NewReader(in).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	count, kept := map[string]int{}, [][]string{rows[0]}
	for _, r := range rows[1:] {
		if _, seen := count[r[1]]; !seen && len(count) == 6 {
			continue
		}
		if count[r[1]] < 40 {
			count[r[1]]++
			kept = append(kept, r)
		}
	}
	path := filepath.Join(t.TempDir(), "slice.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(kept); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func openEncoder(dir, variant string) (trainer.Embedder, func(), error) {
	enc, err := inference.OpenEncoderDir(dir, variant, inference.ModelOptions{})
	if err != nil {
		return nil, nil, err
	}
	return enc, func() { enc.Close() }, nil
}

func (e env) options(out string, ft finetune.Options) trainer.Options {
	ft.Python = e.python
	ft.Script = filepath.Join(e.root, finetune.DefaultScript)
	if ft.Checkpoint == "" {
		ft.Checkpoint = e.checkpoint
	}
	ft.ModelMaxLength = 256
	return trainer.Options{DataPath: e.data, LabelColumn: "category", OutDir: out, Seed: 42, ValFraction: 0.25,
		FineTune: &trainer.FineTune{Options: ft, OpenEncoder: openEncoder,
			QuantizeScript: filepath.Join(e.root, "scripts", "quantize-encoder.py")}}
}

// TestFineTuneServesWhatPyTorchTrained: two processes fine-tune for a few
// steps; the bundle served through ONNX Runtime gives PyTorch's logits on
// 50 validation texts within 1e-3.
func TestFineTuneServesWhatPyTorchTrained(t *testing.T) {
	e := setup(t)
	out := filepath.Join(t.TempDir(), "support-ft")
	o := e.options(out, finetune.Options{Epochs: 2, MaxSteps: 8, BatchSize: 16, Procs: 2, Threads: 1})
	o.Features = []string{trainer.FeaturesEncoder} // the fine-tuned classifier itself
	res, err := trainer.Train(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	hp := res.Manifest.HyperParams
	if hp["processes"] != 2 || hp["fine_tune"] != true {
		t.Errorf("hyper_params processes=%v fine_tune=%v, want 2 and true", hp["processes"], hp["fine_tune"])
	}
	if d, _ := hp["parity_max_abs_logit_diff"].(float64); d > 1e-3 {
		t.Errorf("the run's own parity check: %g", d)
	}
	if n := len(res.Manifest.Metrics.Search[0].Curve); n < 1 {
		t.Errorf("per-epoch curve has %d points", n)
	}

	servedMatchesPyTorch(t, out, res.Manifest.Labels)
}

// servedMatchesPyTorch serves the bundle in out as the consumer and the
// gateway load it, and checks its scores on the run's 50 probe texts
// against the logits PyTorch gave them.
func servedMatchesPyTorch(t *testing.T, out string, labels []string) {
	t.Helper()
	probe, err := finetune.ReadProbe(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(probe.Texts) != 50 {
		t.Fatalf("probe has %d texts, want 50", len(probe.Texts))
	}
	m, err := inference.Open(out, inference.ModelOptions{TopK: len(labels)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	preds, err := m.Predict(context.Background(), probe.Texts)
	if err != nil {
		t.Fatal(err)
	}
	index := map[string]int{}
	for i, l := range labels {
		index[l] = i
	}
	worst := 0.0
	for i, p := range preds {
		// Served scores are softmax probabilities: their logs are the
		// logits up to a constant, so compare both centred.
		served := make([]float64, len(index))
		for _, s := range p.Scores {
			served[index[s.Label]] = math.Log(float64(s.Score))
		}
		want := probe.Logits[i]
		best := 0
		for c := range want {
			if want[c] > want[best] {
				best = c
			}
		}
		if p.Label != labels[best] {
			t.Errorf("text %d %q: served %q, PyTorch %q", i, probe.Texts[i], p.Label, labels[best])
		}
		ms, mw := mean(served), mean32(want)
		for c := range want {
			worst = max(worst, math.Abs((served[c]-ms)-(float64(want[c])-mw)))
		}
	}
	t.Logf("served vs PyTorch logits on %d texts: max |Δ| = %.3g", len(preds), worst)
	if worst > 1e-3 {
		t.Errorf("served logits differ from PyTorch's by %g > 1e-3", worst)
	}
}

// TestFineTuneMPNet: an MPNet checkpoint (a small random one in MPNet's
// layout, tokenizer included) fine-tunes, converts and serves PyTorch's
// logits like a BERT one.
func TestFineTuneMPNet(t *testing.T) {
	e := setup(t)
	ckpt := filepath.Join(t.TempDir(), "mpnet")
	cmd := exec.Command(e.python, filepath.Join(e.root, "scripts", "parity", "tiny_mpnet.py"),
		"--bert-vocab", filepath.Join(e.checkpoint, "vocab.txt"), "--out", ckpt)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tiny_mpnet.py: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "support-mpnet")
	o := e.options(out, finetune.Options{Checkpoint: ckpt, Epochs: 1, MaxSteps: 6, BatchSize: 16})
	o.FineTune.ModelMaxLength = 0 // the checkpoint's own: 128 positions
	o.Features = []string{trainer.FeaturesEncoder}
	res, err := trainer.Train(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if es := res.Manifest.Encoder; es == nil || es.ClsToken != "<s>" || es.SepToken != "</s>" {
		t.Fatalf("encoder spec %+v, want MPNet's <s> and </s>", es)
	}
	servedMatchesPyTorch(t, out, res.Manifest.Labels)
}

// TestFineTuneHybridHead: by default the fine-tuned encoder feeds a hybrid
// head trained in Go (n-grams + embedding); the bundle serves, and records
// the fine-tuning run beside the head's search.
func TestFineTuneHybridHead(t *testing.T) {
	e := setup(t)
	out := filepath.Join(t.TempDir(), "support-hybrid")
	res, err := trainer.Train(context.Background(), e.options(out, finetune.Options{Epochs: 1, MaxSteps: 4, BatchSize: 16}))
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.Graph.Kind != "hybrid" || m.HyperParams["fine_tune"] != true || m.Metrics.Search[0].Params["fine_tune"] != true ||
		len(m.Metrics.Search) < 2 {
		t.Fatalf("kind %s, hyper_params %v, %d trials", m.Graph.Kind, m.HyperParams, len(m.Metrics.Search))
	}
	if _, err := os.Stat(filepath.Join(out, finetune.ProbeFile)); err != nil {
		t.Error(err)
	}
	model, err := inference.Open(out, inference.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	preds, err := model.Predict(context.Background(), []string{"I am still waiting on my card"})
	if err != nil || len(preds) != 1 || preds[0].Label == "" {
		t.Fatalf("predict: %v %v", preds, err)
	}
}

// TestFineTuneRefusals: what cannot run fails at once with one clear error
// and leaves no bundle.
func TestFineTuneRefusals(t *testing.T) {
	e := setup(t)
	notBert := t.TempDir()
	if err := os.WriteFile(filepath.Join(notBert, "config.json"), []byte(`{"model_type":"gpt2","hidden_size":64}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ft   finetune.Options
		want string
	}{
		{"no python", finetune.Options{Python: "/nonexistent/python3"}, "scripts/finetune-env.sh"},
		{"not BERT", finetune.Options{Checkpoint: notBert}, "BERT-architecture"},
	}
	// A GPU asked for where PyTorch sees none: the script refuses before
	// training (on a machine with a GPU this case does not apply).
	if out, err := exec.Command(e.python, "-c", "import torch; print(torch.cuda.is_available())").Output(); err != nil {
		t.Fatalf("python: %v", err)
	} else if strings.TrimSpace(string(out)) == "False" {
		cases = append(cases, struct {
			name string
			ft   finetune.Options
			want string
		}{"cuda without a GPU", finetune.Options{Device: finetune.DeviceCUDA}, "no CUDA GPU"})
	}
	// A Python without PyTorch (the system one, where it has none).
	if exec.Command("python3", "-c", "import torch").Run() != nil {
		cases = append(cases, struct {
			name string
			ft   finetune.Options
			want string
		}{"python without torch", finetune.Options{Python: "python3"}, "No module named 'torch': create the fine-tuning environment with scripts/finetune-env.sh"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m")
			o := e.options(out, c.ft)
			if c.ft.Python != "" {
				o.FineTune.Python = c.ft.Python
			}
			_, err := trainer.Train(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
			if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
				t.Errorf("%s exists after a refused run", out)
			}
			entries, _ := os.ReadDir(filepath.Dir(out))
			for _, en := range entries {
				t.Errorf("left behind: %s", en.Name())
			}
		})
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func mean32(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(len(v))
}
