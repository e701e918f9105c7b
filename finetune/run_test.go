package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeScript stands in for finetune.py (unit tests; the finetune-tagged
// suite runs the real one): it prints the given stdout lines, writes a
// summary into --out unless told to fail, and exits with the given status.
const fakeScript = `
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
mode = os.environ["FAKE_MODE"]
if mode == "refuse":
    print(json.dumps({"event": "error", "message": "--device cuda: PyTorch sees no CUDA GPU here"}))
    sys.exit(2)
if mode == "hang":
    import subprocess, time
    child = subprocess.Popen(["sleep", "60"])
    open(os.environ["FAKE_PIDFILE"], "w").write(str(child.pid))
    print(json.dumps({"event": "start", "steps": 4}), flush=True)
    time.sleep(60)
if mode == "crash":
    print("noise that is not an event")
    print("Traceback: RuntimeError: out of memory", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"event": "start", "steps": 4}))
print("library chatter")
print(json.dumps({"event": "step", "step": 2, "steps": 4, "loss": 0.7}))
print(json.dumps({"event": "epoch", "epoch": 1, "val_accuracy": 0.5, "train_loss": 0.9, "val_loss": 0.8}))
os.makedirs(args["--out"])
json.dump({"val_accuracy": 0.5, "best_epoch": 1, "max_length": 24, "pooling": "mean", "curve": [{"epoch": 1, "val_accuracy": 0.5}]},
          open(os.path.join(args["--out"], "finetune.json"), "w"))
print(json.dumps({"event": "done", "val_accuracy": 0.5}))
`

func fakeOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "fake.py")
	if err := os.WriteFile(script, []byte(fakeScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(dir, "ckpt")
	os.MkdirAll(ckpt, 0o755)
	os.WriteFile(filepath.Join(ckpt, "config.json"), []byte(`{"model_type":"bert","hidden_size":8,"num_attention_heads":2,
		"num_hidden_layers":1,"intermediate_size":16,"max_position_embeddings":32,"vocab_size":10,"type_vocab_size":2}`), 0o644)
	os.WriteFile(filepath.Join(ckpt, "model.safetensors"), nil, 0o644)
	return Options{Python: "python3", Script: script, Checkpoint: ckpt}
}

func TestRunReadsEvents(t *testing.T) {
	o := fakeOptions(t)
	t.Setenv("FAKE_MODE", "ok")
	out := filepath.Join(t.TempDir(), "out")
	var kinds []string
	s, err := Run(context.Background(), o, Data{Train: "t", Val: "v", NumLabels: 2}, out, nil, func(ev Event) {
		kinds = append(kinds, ev.Kind)
		if ev.Kind == "step" && (ev.Step != 2 || ev.Steps != 4) {
			t.Errorf("step event %+v", ev)
		}
		if ev.Kind == "epoch" && (ev.Epoch.Epoch != 1 || ev.ValAccuracy != 0.5 || ev.TrainLoss != 0.9) {
			t.Errorf("epoch event %+v", ev)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(kinds, ","); got != "start,step,epoch,done" {
		t.Errorf("events %s", got)
	}
	if s.MaxLength != 24 || s.BestEpoch != 1 || len(s.Curve) != 1 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunErrors(t *testing.T) {
	for mode, want := range map[string]string{
		"refuse": "fine-tuning refused: --device cuda: PyTorch sees no CUDA GPU here",
		"crash":  "out of memory",
	} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("FAKE_MODE", mode)
			out := filepath.Join(t.TempDir(), "out")
			_, err := Run(context.Background(), fakeOptions(t), Data{NumLabels: 2}, out, nil, nil)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want %q", err, want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s written by a failed run", out)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	o := fakeOptions(t)
	o.Device, o.Procs, o.Python, o.Pooling = "tpu", 0, "/nonexistent/python", "max"
	err := o.Validate()
	for _, want := range []string{`--device "tpu"`, "scripts/finetune-env.sh", `pooling "max"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
	if o.Procs != 1 || o.Epochs != DefaultEpochs || o.BatchSize != DefaultBatch {
		t.Errorf("defaults not filled: %+v", o)
	}
	notBert := fakeOptions(t)
	os.WriteFile(filepath.Join(notBert.Checkpoint, "config.json"), []byte(`{"model_type":"roberta"}`), 0o644)
	if err := notBert.Validate(); err == nil || !strings.Contains(err.Error(), "BERT-architecture") {
		t.Errorf("roberta checkpoint: %v", err)
	}
}

func TestHeadLogitsAndParity(t *testing.T) {
	dir := t.TempDir()
	// A 2-label, 3-hidden head as safetensors: W = [[1,2,3],[4,5,6]], b = [0.5,-1].
	writeSafetensors(t, filepath.Join(dir, HeadFile), map[string]tensor{
		"classifier.weight": {[]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6}},
		"classifier.bias":   {[]int64{2}, []float32{0.5, -1}},
	})
	h, err := ReadHead(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := h.Logits([]float32{1, 0, -1, 0, 1, 0})
	want := [][]float32{{1 - 3 + 0.5, 4 - 6 - 1}, {2.5, 4}}
	if d := MaxAbsDiff(got, want); d > 1e-6 {
		t.Errorf("logits %v, want %v", got, want)
	}
	if d := MaxAbsDiff(got, want[:1]); !math.IsInf(d, 1) {
		t.Errorf("shape mismatch gave %v", d)
	}
}

type tensor struct {
	shape []int64
	data  []float32
}

func writeSafetensors(t *testing.T, path string, ts map[string]tensor) {
	t.Helper()
	header := map[string]any{}
	var body []byte
	for name, tt := range ts {
		start := len(body)
		for _, v := range tt.data {
			b := math.Float32bits(v)
			body = append(body, byte(b), byte(b>>8), byte(b>>16), byte(b>>24))
		}
		header[name] = map[string]any{"dtype": "F32", "shape": tt.shape, "data_offsets": []int{start, len(body)}}
	}
	h, _ := json.Marshal(header)
	n := uint64(len(h))
	out := []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), byte(n >> 32), byte(n >> 40), byte(n >> 48), byte(n >> 56)}
	out = append(append(out, h...), body...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Cancelling a run stops the script and everything it started (torchrun's
// workers), promptly.
func TestRunCancelStopsTheProcessGroup(t *testing.T) {
	t.Setenv("FAKE_MODE", "hang")
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Setenv("FAKE_PIDFILE", pidFile)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, fakeOptions(t), Data{NumLabels: 2}, filepath.Join(t.TempDir(), "out"), nil, func(ev Event) {
			if ev.Kind == "start" {
				close(started)
			}
		})
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the fake script never started")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("error %v, want the cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return // gone (or a zombie awaiting its reaper)
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still running after the run was cancelled", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
