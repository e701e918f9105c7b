// Package finetune runs the fine-tuning step of `triage train --fine-tune`:
// scripts/finetune/finetune.py in the project's Python environment (PyTorch +
// Hugging Face transformers), alone or under torchrun for data-parallel
// training. It is the one place Triage runs Python; what comes back is a plain
// BERT checkpoint plus a linear head, which the trainer converts with the Go
// converter and serves through ONNX Runtime like every other bundle.
package finetune

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/triage-ml/triage/encoder"
)

// Defaults.
const (
	DefaultPython = ".cache/finetune-venv/bin/python" // made by scripts/finetune-env.sh
	DefaultScript = "scripts/finetune/finetune.py"
	DefaultEpochs = 4
	DefaultLR     = 1e-4
	DefaultBatch  = 32
)

// Devices.
const (
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// Files of the checkpoint the script writes.
const (
	HeadFile    = "head.safetensors" // classifier.weight [labels][hidden], classifier.bias
	SummaryFile = "finetune.json"
	// ProbeFile holds PyTorch's logits of the probe texts (Probe): the
	// converted model must reproduce them.
	ProbeFile = "probe-logits.json"
)

// Probe is ProbeFile: texts and the fine-tuned model's logits of them.
type Probe struct {
	Texts  []string    `json:"texts"`
	Logits [][]float32 `json:"logits"`
}

// ReadProbe reads dir/ProbeFile.
func ReadProbe(dir string) (*Probe, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ProbeFile))
	if err != nil {
		return nil, err
	}
	var p Probe
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, ProbeFile), err)
	}
	if len(p.Texts) != len(p.Logits) {
		return nil, fmt.Errorf("read %s: %d texts but %d logit rows", filepath.Join(dir, ProbeFile), len(p.Texts), len(p.Logits))
	}
	return &p, nil
}

// MaxAbsDiff is the largest |a-b| over two equally shaped logit tables
// (+Inf when the shapes differ).
func MaxAbsDiff(a, b [][]float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return math.Inf(1)
		}
		for j := range a[i] {
			d = max(d, math.Abs(float64(a[i][j])-float64(b[i][j])))
		}
	}
	return d
}

// Options configure one fine-tuning run. Zero values take the defaults noted.
type Options struct {
	Python string // interpreter with torch + transformers; default DefaultPython
	Script string // default DefaultScript
	// Checkpoint is the BERT checkpoint folder to start from (config.json,
	// model.safetensors, tokenizer files).
	Checkpoint string
	Pooling    string // encoder.PoolingMean (default) or encoder.PoolingCLS
	MaxLength  int    // tokens per text; 0 = the 99th percentile of training lengths
	// ModelMaxLength caps MaxLength (0 = max_position_embeddings).
	ModelMaxLength int
	Epochs         int     // default DefaultEpochs
	LearningRate   float64 // default DefaultLR
	BatchSize      int     // per process; default DefaultBatch
	Patience       int     // epochs without validation gain before stopping; default 2
	MaxSteps       int     // optimiser steps cap (0 = none): smoke tests
	Device         string  // DeviceCPU (default) or DeviceCUDA
	// Procs > 1 runs torchrun with that many data-parallel processes (DDP:
	// gloo on CPU, NCCL on GPUs, one GPU each).
	Procs   int
	Threads int // torch threads per process (0 = CPUs / Procs)
	// Variant is the served encoder file: "fp32" (default) or "int8"
	// (ONNX Runtime dynamic quantisation of the converted encoder).
	Variant string
}

// Validate fills defaults and reports every invalid option at once.
func (o *Options) Validate() error {
	var errs []error
	o.Python = cmp.Or(o.Python, DefaultPython)
	o.Script = cmp.Or(o.Script, DefaultScript)
	o.Pooling = cmp.Or(o.Pooling, encoder.PoolingMean)
	o.Device = cmp.Or(o.Device, DeviceCPU)
	o.Epochs = cmp.Or(o.Epochs, DefaultEpochs)
	o.LearningRate = cmp.Or(o.LearningRate, DefaultLR)
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatch)
	o.Patience = cmp.Or(o.Patience, 2)
	o.Procs = cmp.Or(o.Procs, 1)
	o.Variant = cmp.Or(o.Variant, "fp32")
	if o.Checkpoint == "" {
		errs = append(errs, errors.New("--fine-tune needs a checkpoint: --encoder DIR (made by `make encoder`) or --checkpoint DIR (a BERT checkpoint)"))
	} else if _, err := encoder.ReadBertConfig(o.Checkpoint); err != nil {
		errs = append(errs, fmt.Errorf("--checkpoint %q: %w", o.Checkpoint, err))
	} else if _, err := os.Stat(filepath.Join(o.Checkpoint, "model.safetensors")); err != nil {
		errs = append(errs, fmt.Errorf("--checkpoint %q: no model.safetensors (Triage reads safetensors weights)", o.Checkpoint))
	}
	if o.Pooling != encoder.PoolingMean && o.Pooling != encoder.PoolingCLS {
		errs = append(errs, fmt.Errorf("pooling %q: use %q or %q", o.Pooling, encoder.PoolingMean, encoder.PoolingCLS))
	}
	if o.Device != DeviceCPU && o.Device != DeviceCUDA {
		errs = append(errs, fmt.Errorf("--device %q: use %q or %q", o.Device, DeviceCPU, DeviceCUDA))
	}
	if o.Epochs < 1 || o.Epochs > 100 {
		errs = append(errs, fmt.Errorf("--fine-tune-epochs %d: must be 1..100", o.Epochs))
	}
	if o.LearningRate <= 0 || o.LearningRate > 0.01 {
		errs = append(errs, fmt.Errorf("--fine-tune-lr %v: must be in (0, 0.01]", o.LearningRate))
	}
	if o.BatchSize < 1 || o.BatchSize > 4096 {
		errs = append(errs, fmt.Errorf("--fine-tune-batch %d: must be 1..4096", o.BatchSize))
	}
	if o.Procs < 1 || o.Procs > 64 {
		errs = append(errs, fmt.Errorf("--nproc %d: must be 1..64", o.Procs))
	}
	if o.MaxLength < 0 || o.MaxSteps < 0 || o.Threads < 0 || o.Patience < 1 {
		errs = append(errs, errors.New("fine-tune max length, max steps and threads must not be negative, patience at least 1"))
	}
	if o.Variant != "fp32" && o.Variant != "int8" {
		errs = append(errs, fmt.Errorf("--encoder-variant %q: use fp32 or int8", o.Variant))
	}
	if _, err := os.Stat(o.Script); err != nil {
		errs = append(errs, fmt.Errorf("fine-tuning script %q: %w (run from the repository root, or set its path)", o.Script, err))
	}
	if _, err := exec.LookPath(o.Python); err != nil {
		errs = append(errs, fmt.Errorf("fine-tuning needs Python with PyTorch and transformers: %q: %w (create it with scripts/finetune-env.sh, or set --python)", o.Python, err))
	}
	return errors.Join(errs...)
}

// Epoch is one epoch's figures, as the script reports them.
type Epoch struct {
	Epoch       int     `json:"epoch"`
	TrainLoss   float64 `json:"train_loss"`
	ValAccuracy float64 `json:"val_accuracy"`
	ValLoss     float64 `json:"val_loss"`
	ValMacroF1  float64 `json:"val_macro_f1"`
}

// Summary is finetune.json: what the run did and reached.
type Summary struct {
	ValAccuracy float64 `json:"val_accuracy"` // PyTorch's, on the validation file, at BestEpoch
	BestEpoch   int     `json:"best_epoch"`
	EpochsRun   int     `json:"epochs_run"`
	Steps       int     `json:"steps"`
	MaxLength   int     `json:"max_length"`
	Pooling     string  `json:"pooling"`
	LR          float64 `json:"lr"`
	BatchSize   int     `json:"batch_size"`
	Processes   int     `json:"processes"`
	Device      string  `json:"device"`
	Seconds     float64 `json:"seconds"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"` // rank 0's
	Torch       string  `json:"torch"`
	Curve       []Epoch `json:"curve"`
}

// Event is one line the script prints: Kind is start, step, epoch, done or
// error; the other fields are those of that kind.
type Event struct {
	Kind    string  `json:"event"`
	Step    int     `json:"step"`
	Steps   int     `json:"steps"`
	Loss    float64 `json:"loss"`
	Message string  `json:"message"`
	Epoch
	Raw map[string]any `json:"-"`
}

// Data is the run's input: JSONL files of {"text", "label"} with label ids
// in [0, NumLabels).
type Data struct {
	Train, Val string
	NumLabels  int
}

// Run fine-tunes into out (which must not exist; it appears whole or not at
// all) and returns the summary. onEvent, when set, sees every event as it
// arrives (progress, per-epoch metrics). The script's stderr goes to log.
// Extra arguments (such as --logits-texts) are passed to the script.
func Run(ctx context.Context, o Options, d Data, out string, log *slog.Logger, onEvent func(Event), extra ...string) (*Summary, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	args := []string{o.Script,
		"--checkpoint", o.Checkpoint, "--train", d.Train, "--val", d.Val, "--num-labels", strconv.Itoa(d.NumLabels),
		"--out", out, "--pooling", o.Pooling, "--max-length", strconv.Itoa(o.MaxLength),
		"--model-max-length", strconv.Itoa(o.ModelMaxLength), "--epochs", strconv.Itoa(o.Epochs),
		"--max-steps", strconv.Itoa(o.MaxSteps), "--lr", strconv.FormatFloat(o.LearningRate, 'g', -1, 64),
		"--batch-size", strconv.Itoa(o.BatchSize), "--patience", strconv.Itoa(o.Patience), "--device", o.Device,
		"--threads", strconv.Itoa(o.Threads)}
	args = append(args, extra...)
	if o.Procs > 1 {
		// torchrun, as the module: the venv's console script may be absent
		// from PATH. --standalone runs a private rendezvous on this host.
		args = append([]string{"-m", "torch.distributed.run", "--standalone", "--nproc_per_node", strconv.Itoa(o.Procs)}, args...)
	}
	cmd := exec.CommandContext(ctx, o.Python, args...)
	ownGroup(cmd)
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "TOKENIZERS_PARALLELISM=false")
	if o.Device == DeviceCPU {
		// The CUDA build of torch would otherwise probe for a GPU it is
		// told not to use.
		cmd.Env = append(cmd.Env, "CUDA_VISIBLE_DEVICES=")
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	log.Info("fine-tuning started", "python", o.Python, "checkpoint", o.Checkpoint, "device", o.Device, "processes", o.Procs)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start fine-tuning (%s): %w (create the environment with scripts/finetune-env.sh)", o.Python, err)
	}
	tail := &lastLines{max: 20}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			log.Debug("fine-tuning", "stderr", line)
		}
	}()
	var refusal string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Kind == "" {
			log.Debug("fine-tuning", "stdout", sc.Text()) // library chatter, not an event
			continue
		}
		_ = json.Unmarshal(sc.Bytes(), &ev.Raw)
		switch ev.Kind {
		case "error":
			refusal = ev.Message
		case "step":
			log.Info("fine-tuning progress", "step", ev.Step, "steps", ev.Steps, "epoch", ev.Epoch.Epoch, "loss", ev.Loss)
		case "epoch":
			log.Info("fine-tuning epoch", "epoch", ev.Epoch.Epoch, "train_loss", ev.TrainLoss, "val_accuracy", ev.ValAccuracy, "val_loss", ev.ValLoss)
		case "start", "done":
			log.Info("fine-tuning "+ev.Kind, "detail", ev.Raw)
		}
		if onEvent != nil {
			onEvent(ev)
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		os.RemoveAll(out + ".tmp")
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("fine-tuning: %w", ctx.Err())
		case refusal != "":
			return nil, fmt.Errorf("fine-tuning refused: %s", refusal)
		default:
			return nil, fmt.Errorf("fine-tuning failed (%w); its last output:\n%s", err, tail.String())
		}
	}
	s, err := ReadSummary(out)
	if err != nil {
		return nil, fmt.Errorf("fine-tuning finished without a checkpoint: %w", err)
	}
	return s, nil
}

// ReadSummary reads dir/finetune.json.
func ReadSummary(dir string) (*Summary, error) {
	raw, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return &s, nil
}

// Head is the fine-tuned linear layer: logits = W·e + B with W [Labels][Hidden].
type Head struct {
	Labels, Hidden int
	W, B           []float32
}

// ReadHead reads dir/head.safetensors.
func ReadHead(dir string) (*Head, error) {
	st, err := encoder.ReadSafetensors(filepath.Join(dir, HeadFile))
	if err != nil {
		return nil, fmt.Errorf("read fine-tuned head: %w", err)
	}
	ws := st.Shape("classifier.weight")
	if len(ws) != 2 {
		return nil, fmt.Errorf("read fine-tuned head: classifier.weight has shape %v, want [labels, hidden]", ws)
	}
	w, err := st.Float32("classifier.weight", ws...)
	if err != nil {
		return nil, fmt.Errorf("read fine-tuned head: %w", err)
	}
	b, err := st.Float32("classifier.bias", ws[0])
	if err != nil {
		return nil, fmt.Errorf("read fine-tuned head: %w", err)
	}
	return &Head{Labels: int(ws[0]), Hidden: int(ws[1]), W: w, B: b}, nil
}

// Logits applies the head to embeddings [n][Hidden] row-major.
func (h *Head) Logits(emb []float32) [][]float32 {
	n := len(emb) / h.Hidden
	out := make([][]float32, n)
	for i := range n {
		e := emb[i*h.Hidden : (i+1)*h.Hidden]
		row := make([]float32, h.Labels)
		for c := range h.Labels {
			w := h.W[c*h.Hidden : (c+1)*h.Hidden]
			s := h.B[c]
			for k, v := range e {
				s += w[k] * v
			}
			row[c] = s
		}
		out[i] = row
	}
	return out
}

// lastLines keeps the last max lines written, for error messages.
type lastLines struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (l *lastLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if len(l.lines) > l.max {
		l.lines = l.lines[len(l.lines)-l.max:]
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	for _, s := range l.lines {
		b.WriteString("  " + strings.TrimRight(s, "\r") + "\n")
	}
	return b.String()
}
