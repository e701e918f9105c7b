package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/encoder"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/finetune"
	"github.com/triage-ml/triage/internal/dataset"
)

// FineTune makes a training run fine-tune a BERT checkpoint (PyTorch, in
// the project's Python environment) instead of training a head on frozen
// features. The bundle is kind "encoder": the fine-tuned transformer,
// converted by Triage's Go converter, then its linear layer as the head, so
// it serves through the same runtime as every other bundle.
type FineTune struct {
	finetune.Options
	// QuantizeScript makes the int8 variant (Variant "int8"); default
	// scripts/quantize-encoder.py, run with Options.Python.
	QuantizeScript string
	// OpenEncoder opens a converted encoder folder for embedding (ONNX
	// Runtime); the run scores the validation split through it, so the
	// bundle's figures are the served model's. Required.
	OpenEncoder func(dir, variant string) (Embedder, func(), error)
}

// Stages of a fine-tuning run (besides StageLoading and the last two).
const (
	StageFineTuning = "fine-tuning"
	StageConverting = "converting to ONNX"
)

// AgreementTolerance is how far ONNX Runtime's validation accuracy of the
// converted model may be from PyTorch's before the run warns.
const AgreementTolerance = 0.002

// Parity: the converted fp32 model must reproduce PyTorch's logits of the
// first ProbeTexts validation texts within ParityTolerance, or the run
// fails: a bundle that is not the model that was trained is never written.
const (
	ProbeTexts      = 50
	ParityTolerance = 1e-3
)

func (f *FineTune) validate(o *Options) error {
	var errs []error
	if err := f.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	if f.OpenEncoder == nil {
		errs = append(errs, errors.New("fine-tune: no way to open the converted encoder (OpenEncoder)"))
	}
	if o.Encoder != nil {
		errs = append(errs, errors.New("--fine-tune trains the encoder itself: it cannot also train a head on a frozen --encoder (the checkpoint comes from --encoder's folder)"))
	}
	if len(o.Features) > 0 && !slices.Contains(o.Features, FeaturesEncoder) {
		errs = append(errs, fmt.Errorf("--fine-tune trains an encoder: --features %s must include %q (alone: the fine-tuned classifier; with %q: a hybrid head on the fine-tuned encoder)",
			strings.Join(o.Features, ","), FeaturesEncoder, FeaturesNgram))
	}
	return errors.Join(errs...)
}

// fineTune is Train for Options.FineTune.
func fineTune(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	ft := opts.FineTune
	log := opts.Logger
	prog := &progress{f: opts.Progress}
	prog.report(StageLoading, 0)
	ds, labels, train, val, err := loadSplit(opts)
	if err != nil {
		return nil, err
	}
	index := labelIndex(labels)
	trY, vaY := labelIDs(train, index), labelIDs(val, index)

	// Everything is made in a scratch folder beside the bundle and removed
	// at the end: a failure anywhere leaves no half-written bundle.
	parent := filepath.Dir(filepath.Clean(opts.OutDir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	work, err := os.MkdirTemp(parent, "."+filepath.Base(opts.OutDir)+".finetune-")
	if err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	defer os.RemoveAll(work)
	data := finetune.Data{Train: filepath.Join(work, "train.jsonl"), Val: filepath.Join(work, "val.jsonl"), NumLabels: len(labels)}
	if err := writeLabelled(data.Train, train, trY); err != nil {
		return nil, err
	}
	if err := writeLabelled(data.Val, val, vaY); err != nil {
		return nil, err
	}

	probePath := filepath.Join(work, "probe.json")
	if err := writeJSON(probePath, texts(val[:min(ProbeTexts, len(val))])); err != nil {
		return nil, err
	}

	prog.report(StageFineTuning, 0.05)
	ckpt := filepath.Join(work, "checkpoint")
	sum, err := finetune.Run(ctx, ft.Options, data, ckpt, log, func(ev finetune.Event) {
		switch ev.Kind {
		case "step":
			prog.report(fmt.Sprintf("%s (step %d/%d)", StageFineTuning, ev.Step, ev.Steps), 0.05+0.75*float64(ev.Step)/float64(max(ev.Steps, 1)))
		case "epoch":
			prog.report(fmt.Sprintf("%s (epoch %d: validation accuracy %.4f)", StageFineTuning, ev.Epoch.Epoch, ev.ValAccuracy), 0)
		}
	}, "--logits-texts", probePath)
	if err != nil {
		return nil, err
	}

	prog.report(StageConverting, 0.82)
	encDir := filepath.Join(work, "encoder")
	noNormalize := false
	em, err := encoder.Convert(ckpt, encDir, encoder.ConvertOptions{MaxLength: sum.MaxLength, Pooling: sum.Pooling, Normalize: &noNormalize})
	if err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	head, err := finetune.ReadHead(ckpt)
	if err != nil {
		return nil, err
	}
	if head.Labels != len(labels) || head.Hidden != em.HiddenSize {
		return nil, fmt.Errorf("fine-tune: head is %d×%d, want %d labels × %d hidden", head.Labels, head.Hidden, len(labels), em.HiddenSize)
	}
	parity, err := checkParity(ctx, ft, encDir, ckpt, head)
	if err != nil {
		return nil, err
	}
	log.Info("converted model reproduces PyTorch's logits", "texts", min(ProbeTexts, len(val)), "max_abs_diff", parity, "tolerance", ParityTolerance)
	// The int8 variant is made and scored whichever variant ships, so every
	// run reports both; only a shipped int8 makes a failed quantiser fatal.
	if qm, err := quantize(ctx, ft, encDir); err == nil {
		em = qm
	} else if ft.Variant == encoderdir.VariantInt8 {
		return nil, err
	} else {
		log.Warn("no int8 variant scored", "err", err)
	}

	prog.report(StageEmbedding, 0.85)
	emb, closeEnc, err := ft.OpenEncoder(encDir, ft.Variant)
	if err != nil {
		return nil, fmt.Errorf("fine-tune: open the converted encoder: %w", err)
	}
	defer closeEnc()
	vaE, err := emb.EmbedTexts(ctx, texts(val))
	if err != nil {
		return nil, fmt.Errorf("fine-tune: embed validation texts: %w", err)
	}
	dim := head.Hidden
	model := headModel(head)
	vaX := featurizer.AppendDense(make([]featurizer.Vector, len(val)), vaE, dim, 1, 1)
	valReport := evaluate(model, vaX, vaY, labels)
	other := encoderdir.VariantInt8
	if ft.Variant == encoderdir.VariantInt8 {
		other = encoderdir.VariantFP32
	}
	variantAcc := map[string]float64{ft.Variant: valReport.Accuracy}
	if _, ok := em.Files["encoder-int8.onnx"]; ok {
		acc, err := variantAccuracy(ctx, ft, encDir, other, model, val, vaY, labels)
		if err != nil {
			return nil, err
		}
		variantAcc[other] = acc
		log.Info("validation accuracy of the other encoder variant", "variant", other, "accuracy", acc)
	}
	gap := valReport.Accuracy - sum.ValAccuracy
	if ft.Variant == encoderdir.VariantFP32 && math.Abs(gap) > AgreementTolerance {
		log.Warn("ONNX Runtime's validation accuracy differs from PyTorch's", "onnxruntime", valReport.Accuracy, "pytorch", sum.ValAccuracy, "tolerance", AgreementTolerance)
	} else {
		log.Info("validation accuracy through ONNX Runtime", "onnxruntime", valReport.Accuracy, "pytorch", sum.ValAccuracy, "variant", ft.Variant)
	}

	ftParams := map[string]any{"fine_tune": true, "checkpoint": ft.Checkpoint, "optimizer": "adamw",
		"fine_tune_learning_rate": ft.LearningRate, "batch_size": ft.BatchSize, "max_epochs": ft.Epochs, "fine_tune_epochs": sum.BestEpoch,
		"epochs_run": sum.EpochsRun, "steps": sum.Steps, "patience": ft.Patience, "max_length": sum.MaxLength,
		"pooling": sum.Pooling, "device": ft.Device, "processes": sum.Processes, "encoder_variant": ft.Variant,
		"torch": sum.Torch, "pytorch_val_accuracy": sum.ValAccuracy, "fine_tune_seconds": sum.Seconds,
		"fine_tune_peak_rss_mib": sum.PeakRSSMiB, "parity_max_abs_logit_diff": parity, "variant_val_accuracy": variantAcc,
		"fine_tuned_head_val_accuracy": valReport.Accuracy}
	curve := make([]bundle.EpochScore, len(sum.Curve))
	for i, e := range sum.Curve {
		curve[i] = bundle.EpochScore{Epoch: e.Epoch, ValAccuracy: e.ValAccuracy, ValMacroF1: e.ValMacroF1,
			TrainLoss: &e.TrainLoss, ValLoss: &e.ValLoss}
	}
	trial := bundle.Trial{Params: map[string]any{"fine_tune": true, "learning_rate": ft.LearningRate, "batch_size": ft.BatchSize},
		BestEpoch: sum.BestEpoch, ValAccuracy: sum.ValAccuracy, ValMacroF1: valReport.MacroF1, Curve: curve}
	shipped := []bundle.CopyFile{{Name: finetune.SummaryFile, From: filepath.Join(ckpt, finetune.SummaryFile)},
		{Name: finetune.ProbeFile, From: filepath.Join(ckpt, finetune.ProbeFile)}}
	if slices.Contains(opts.Features, FeaturesNgram) {
		return fineTunedHybrid(ctx, opts, ckpt, work, sum, fineTuned{params: ftParams, trial: trial, files: shipped,
			source: ft.Checkpoint + " (fine-tuned)", start: start}, prog)
	}

	// The fine-tuned classifier ships: only it needs the training embeddings
	// (train accuracy, centroid, abstention); a hybrid head embeds its own.
	trE, err := emb.EmbedTexts(ctx, texts(train))
	if err != nil {
		return nil, fmt.Errorf("fine-tune: embed training texts: %w", err)
	}
	trainReport := evaluate(model, featurizer.AppendDense(make([]featurizer.Vector, len(train)), trE, dim, 1, 1), trY, labels)

	prog.report(StageExporting, 0.92)
	o := opts
	o.Features = []string{FeaturesEncoder}
	o.Encoder = &EncoderSource{Embedder: emb, Dir: encDir, Variant: ft.Variant, Manifest: em}
	hp := HyperParams{Loss: LossLogistic, LearningRate: ft.LearningRate, Epochs: sum.BestEpoch}
	m, onnxBytes, extra, err := exportHead(o, labels, model, hp, 1, dim, 1)
	if err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	m.Encoder.Source = ft.Checkpoint + " (fine-tuned)"
	m.HyperParams = ftParams
	m.HyperParams["learning_rate"], m.HyperParams["epochs"] = ft.LearningRate, sum.BestEpoch
	m.Metrics = bundle.Metrics{Validation: valReport, TrainAcc: trainReport.Accuracy, Search: []bundle.Trial{trial}}
	extra = append(extra, describe(&m, model, evidence{labels: labels, texts: texts(val), x: vaX, y: vaY,
		emb: vaE, trE: trE, trY: trY, dim: dim, embedder: emb,
		window: opts.MonitorWindow, seed: opts.Seed, target: opts.AbstainPrecision}, log)...)
	extra = append(extra, shipped...)
	m.Training = trainingRecord(opts, ds, len(train), len(val), start)
	if err := bundle.Write(opts.OutDir, &m, nil, onnxBytes, extra...); err != nil {
		return nil, err
	}
	log.Info("model written", "dir", opts.OutDir, "val_accuracy", valReport.Accuracy, "val_macro_f1", valReport.MacroF1,
		"pytorch_val_accuracy", sum.ValAccuracy, "seconds", m.Training.Seconds)
	prog.report(StageWritten, 1)
	return &Result{Dir: opts.OutDir, Manifest: m}, nil
}

// fineTuned is what a hybrid head trained on a fine-tuned encoder carries
// over from the fine-tuning: its settings and figures, its curve (the first
// trial), the files it ships, where the encoder came from, when it began.
type fineTuned struct {
	params map[string]any
	trial  bundle.Trial
	files  []bundle.CopyFile
	source string
	start  time.Time
}

// fineTunedHybrid trains the Go hybrid head (n-grams + embedding, the usual
// search) on the fine-tuned encoder. The encoder is converted again with L2
// normalisation: the head's embedding scales are searched for unit vectors.
func fineTunedHybrid(ctx context.Context, opts Options, ckpt, work string, sum *finetune.Summary, ftd fineTuned, prog *progress) (*Result, error) {
	ft := opts.FineTune
	dir := filepath.Join(work, "encoder-normalized")
	yes := true
	em, err := encoder.Convert(ckpt, dir, encoder.ConvertOptions{MaxLength: sum.MaxLength, Pooling: sum.Pooling, Normalize: &yes})
	if err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	if ft.Variant == encoderdir.VariantInt8 {
		if em, err = quantize(ctx, ft, dir); err != nil {
			return nil, err
		}
	}
	emb, closeEnc, err := ft.OpenEncoder(dir, ft.Variant)
	if err != nil {
		return nil, fmt.Errorf("fine-tune: open the converted encoder: %w", err)
	}
	defer closeEnc()
	o := opts
	o.FineTune, o.fineTuned = nil, &ftd
	o.Features = []string{FeaturesNgram, FeaturesEncoder}
	o.Encoder = &EncoderSource{Embedder: emb, Dir: dir, Variant: ft.Variant, Manifest: em}
	if opts.Progress != nil {
		o.Progress = func(p Progress) {
			prog.report("hybrid head: "+p.Stage, 0.88+0.12*p.Fraction)
		}
	}
	return Train(ctx, o)
}

// headModel is the fine-tuned linear layer as a Triage head: feature 0 is
// the padding row, features 1..dim the embedding.
func headModel(h *finetune.Head) *Linear {
	m := newLinear(1+h.Hidden, h.Labels)
	for c := range h.Labels {
		for k := range h.Hidden {
			m.W[(1+k)*h.Labels+c] = h.W[c*h.Hidden+k]
		}
	}
	copy(m.B, h.B)
	return m
}

// writeLabelled writes examples as the JSONL the fine-tuning script reads.
func writeLabelled(path string, exs []dataset.Example, ys []int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("fine-tune: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i, e := range exs {
		if err := enc.Encode(struct {
			Text  string `json:"text"`
			Label int    `json:"label"`
		}{e.Text, ys[i]}); err != nil {
			f.Close()
			return fmt.Errorf("fine-tune: write %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("fine-tune: write %s: %w", path, err)
	}
	return f.Close()
}

// checkParity scores the probe texts through ONNX Runtime with the
// converted fp32 encoder and the head, and returns the largest logit
// difference from PyTorch's; over ParityTolerance it is an error.
func checkParity(ctx context.Context, ft *FineTune, encDir, ckpt string, head *finetune.Head) (float64, error) {
	probe, err := finetune.ReadProbe(ckpt)
	if err != nil {
		return 0, fmt.Errorf("fine-tune: %w", err)
	}
	emb, closeEnc, err := ft.OpenEncoder(encDir, encoderdir.VariantFP32)
	if err != nil {
		return 0, fmt.Errorf("fine-tune: open the converted encoder: %w", err)
	}
	defer closeEnc()
	e, err := emb.EmbedTexts(ctx, probe.Texts)
	if err != nil {
		return 0, fmt.Errorf("fine-tune: embed the probe texts: %w", err)
	}
	d := finetune.MaxAbsDiff(head.Logits(e), probe.Logits)
	if d > ParityTolerance {
		return d, fmt.Errorf("fine-tune: the converted model's logits differ from PyTorch's by up to %.3g (tolerance %g): the ONNX conversion does not match this checkpoint", d, ParityTolerance)
	}
	return d, nil
}

// variantAccuracy scores the validation split with an encoder variant the
// bundle does not ship.
func variantAccuracy(ctx context.Context, ft *FineTune, encDir, variant string, model *Linear, val []dataset.Example, vaY []int, labels []string) (float64, error) {
	emb, closeEnc, err := ft.OpenEncoder(encDir, variant)
	if err != nil {
		return 0, fmt.Errorf("fine-tune: open the %s encoder: %w", variant, err)
	}
	defer closeEnc()
	e, err := emb.EmbedTexts(ctx, texts(val))
	if err != nil {
		return 0, fmt.Errorf("fine-tune: embed validation texts (%s): %w", variant, err)
	}
	x := featurizer.AppendDense(make([]featurizer.Vector, len(val)), e, emb.Dim(), 1, 1)
	return evaluate(model, x, vaY, labels).Accuracy, nil
}

func writeJSON(path string, v any) error {
	raw, err := json.Marshal(v)
	if err == nil {
		err = os.WriteFile(path, raw, 0o644)
	}
	if err != nil {
		return fmt.Errorf("fine-tune: write %s: %w", path, err)
	}
	return nil
}

// quantize writes the int8 variant beside the converted encoder (ONNX
// Runtime's dynamic quantiser, as for the frozen encoder) and rereads the
// manifest that now lists it.
func quantize(ctx context.Context, ft *FineTune, dir string) (*encoderdir.Manifest, error) {
	script := ft.QuantizeScript
	if script == "" {
		script = "scripts/quantize-encoder.py"
	}
	out, err := exec.CommandContext(ctx, ft.Python, script, dir).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("fine-tune: int8 quantisation (%s %s): %w\n%s", ft.Python, script, err, out)
	}
	return encoderdir.Read(dir)
}
