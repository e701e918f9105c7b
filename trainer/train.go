// Package trainer trains Triage's linear text classifiers in pure Go and
// writes them as model bundles that ONNX Runtime serves: featurise, carve a
// stratified validation split, search hyper-parameters on it, export ONNX.
// JobService is the trainer role: it queues training jobs, registers what
// they train and, over Kafka (KafkaJobs on the client side), serves other
// processes.
package trainer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/onnxgraph"
	"github.com/triage-ml/triage/internal/scoring"
)

// Options configure one training run. Zero values are filled by Validate
// with the defaults documented on each field.
type Options struct {
	DataPath    string
	TextColumn  string // default "text"
	LabelColumn string // default "label"
	OutDir      string
	Name        string // default: base name of OutDir
	Version     string // default: UTC time, e.g. 20261124T170000Z

	Seed        uint64
	ValFraction float64 // default 0.1

	Featurizer    featurizer.Config
	Losses        []string  // default [logistic]
	LearningRates []float64 // default [0.1, 0.2]
	L2s           []float64 // default [0, 1e-5]
	MaxEpochs     int       // default 20
	// MonitorWindow is the window size the drift monitor's thresholds are
	// bootstrapped for; default DefaultMonitorWindow.
	MonitorWindow int
	Patience      int // epochs without improvement before stopping; default 3
	Workers       int // parallel trials; default GOMAXPROCS

	// Features are the head's inputs: "ngram" (default), "encoder", or both.
	// "encoder" needs Encoder.
	Features []string
	Encoder  *EncoderSource
	// EncoderScales multiply the embedding before the head; searched like
	// the other hyper-parameters because they set the embedding's weight
	// against the n-gram features. Default [1, 3].
	EncoderScales []float64

	// AbstainPrecision is the precision the accepted validation predictions
	// must reach at the bundle's abstention threshold (Manifest.Abstain);
	// 0 means DefaultAbstainPrecision, a negative value writes no rule (the
	// model never abstains).
	AbstainPrecision float64

	// FineTune, when set, fine-tunes a BERT checkpoint instead of training
	// a head on frozen features (see FineTune).
	FineTune *FineTune
	// Distill, when set, trains the head on a teacher model's probabilities
	// mixed with the gold labels (see Distill).
	Distill *Distill
	// fineTuned is set when Train fits the hybrid head of a fine-tuning run.
	fineTuned *fineTuned

	Logger *slog.Logger
	// Progress, when set, is told each step of the run (see Progress).
	// Calls are serialised and Fraction never decreases; keep it quick, it
	// runs on the training goroutines.
	Progress func(p Progress)
}

// Progress is how far a training run has got.
type Progress struct {
	// Stage is what the run is doing: StageLoading, StageFeaturising,
	// StageEmbedding, StageSearching (with "(trial i/n)" once a trial is
	// done), StageExporting, then StageWritten.
	Stage    string
	Fraction float64 // 0..1; 1 once the bundle is written
}

// Progress stages.
const (
	StageLoading     = "loading data"
	StageFeaturising = "featurising"
	StageEmbedding   = "embedding"
	StageSearching   = "searching hyper-parameters"
	StageExporting   = "exporting"
	StageWritten     = "bundle written"
)

// progress serialises Options.Progress calls and keeps Fraction monotonic:
// trials finish on several goroutines.
type progress struct {
	mu           sync.Mutex
	f            func(Progress)
	last         float64
	done, trials int
}

func (p *progress) report(stage string, fraction float64) {
	if p.f == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.send(stage, fraction)
}

func (p *progress) send(stage string, fraction float64) {
	p.last = max(p.last, min(fraction, 1))
	p.f(Progress{Stage: stage, Fraction: p.last})
}

// trialDone reports one more finished trial: trials are the bulk of a run,
// 0.2..0.9 of it in equal steps.
func (p *progress) trialDone() {
	if p.f == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.send(fmt.Sprintf("%s (trial %d/%d)", StageSearching, p.done, p.trials), 0.20+0.70*float64(p.done)/float64(max(p.trials, 1)))
}

// Feature sets.
const (
	FeaturesNgram   = "ngram"
	FeaturesEncoder = "encoder"
)

// Embedder computes sentence embeddings, [len(texts)][Dim] row-major;
// *inference.Encoder implements it.
type Embedder interface {
	EmbedTexts(ctx context.Context, texts []string) ([]float32, error)
	Dim() int
}

// EncoderSource is the encoder a head is trained on, and copied into the
// bundle so it serves with exactly the encoder it was trained with.
type EncoderSource struct {
	Embedder Embedder
	Dir      string               // converted encoder directory
	Variant  string               // fp32 or int8
	Manifest *encoderdir.Manifest // Dir's encoder.json
}

func (o *Options) uses(feature string) bool { return slices.Contains(o.Features, feature) }

// Validate fills defaults and reports every invalid option at once.
func (o *Options) Validate() error {
	var errs []error
	if o.FineTune != nil {
		errs = append(errs, o.FineTune.validate(o))
	}
	if o.DataPath == "" {
		errs = append(errs, errors.New("--data: path to a CSV or JSONL file is required"))
	}
	if o.OutDir == "" {
		errs = append(errs, errors.New("--out: bundle directory is required"))
	}
	o.TextColumn = cmp.Or(o.TextColumn, "text")
	o.LabelColumn = cmp.Or(o.LabelColumn, "label")
	if o.Name == "" && o.OutDir != "" {
		o.Name = filepath.Base(filepath.Clean(o.OutDir))
	}
	if o.Version == "" {
		o.Version = time.Now().UTC().Format("20060102T150405Z")
	}
	if o.ValFraction == 0 {
		o.ValFraction = 0.1
	}
	if o.ValFraction <= 0 || o.ValFraction >= 0.5 {
		errs = append(errs, fmt.Errorf("--val-fraction %v: must be in (0, 0.5)", o.ValFraction))
	}
	if o.Featurizer == (featurizer.Config{}) {
		o.Featurizer = featurizer.DefaultConfig()
	}
	if err := o.Featurizer.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(o.Losses) == 0 {
		o.Losses = []string{LossLogistic}
	}
	for _, l := range o.Losses {
		if l != LossLogistic && l != LossHinge {
			errs = append(errs, fmt.Errorf("--loss %q: use %q or %q", l, LossLogistic, LossHinge))
		}
	}
	if len(o.LearningRates) == 0 {
		o.LearningRates = []float64{0.1, 0.2}
	}
	for _, lr := range o.LearningRates {
		if lr <= 0 || lr > 10 {
			errs = append(errs, fmt.Errorf("--learning-rates %v: each must be in (0, 10]", lr))
		}
	}
	if len(o.L2s) == 0 {
		o.L2s = []float64{0, 1e-5}
	}
	for _, l2 := range o.L2s {
		if l2 < 0 || l2 >= 1 {
			errs = append(errs, fmt.Errorf("--l2 %v: each must be in [0, 1)", l2))
		}
	}
	if o.MonitorWindow == 0 {
		o.MonitorWindow = DefaultMonitorWindow
	}
	if o.MonitorWindow < 10 {
		errs = append(errs, fmt.Errorf("monitor window %d: must be at least 10 predictions", o.MonitorWindow))
	}
	if o.AbstainPrecision == 0 {
		o.AbstainPrecision = DefaultAbstainPrecision
	}
	if o.AbstainPrecision > 1 {
		errs = append(errs, fmt.Errorf("--abstain-precision %v: must be at most 1 (0 disables)", o.AbstainPrecision))
	}
	if o.MaxEpochs == 0 {
		o.MaxEpochs = 20
	}
	if o.MaxEpochs < 1 || o.MaxEpochs > 1000 {
		errs = append(errs, fmt.Errorf("--max-epochs %d: must be 1..1000", o.MaxEpochs))
	}
	if o.Patience == 0 {
		o.Patience = 3
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Features) == 0 {
		o.Features = []string{FeaturesNgram}
		if o.Encoder != nil || o.FineTune != nil {
			o.Features = append(o.Features, FeaturesEncoder)
		}
	}
	for _, f := range o.Features {
		if f != FeaturesNgram && f != FeaturesEncoder {
			errs = append(errs, fmt.Errorf("--features %q: use %q, %q or %q,%q", f, FeaturesNgram, FeaturesEncoder, FeaturesNgram, FeaturesEncoder))
		}
	}
	if o.uses(FeaturesEncoder) && o.Encoder == nil && o.FineTune == nil {
		errs = append(errs, errors.New("--features encoder needs --encoder DIR (a converted encoder; `make encoder` makes one)"))
	}
	if !o.uses(FeaturesEncoder) && o.Encoder != nil {
		errs = append(errs, fmt.Errorf("--encoder is set but --features %s does not include %q", strings.Join(o.Features, ","), FeaturesEncoder))
	}
	if len(o.EncoderScales) == 0 {
		o.EncoderScales = []float64{1, 3}
	}
	for _, sc := range o.EncoderScales {
		if sc <= 0 || sc > 100 {
			errs = append(errs, fmt.Errorf("--encoder-scales %v: each must be in (0, 100]", sc))
		}
	}
	if o.Distill != nil {
		errs = append(errs, o.Distill.validate(o))
	}
	return errors.Join(errs...)
}

// Result is what a training run produced.
type Result struct {
	Dir      string
	Manifest bundle.Manifest
}

// Train runs the whole pipeline and writes the bundle to opts.OutDir.
func Train(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("train options: %w", err)
	}
	if opts.FineTune != nil {
		return fineTune(ctx, opts)
	}
	start := time.Now()
	log := opts.Logger
	prog := &progress{f: opts.Progress}
	prog.report(StageLoading, 0)
	ds, labels, train, val, err := loadSplit(opts)
	if err != nil {
		return nil, err
	}
	prog.report(StageFeaturising, 0.10)

	index := labelIndex(labels)
	trX, trY := make([]featurizer.Vector, len(train)), labelIDs(train, index)
	vaX, vaY := make([]featurizer.Vector, len(val)), labelIDs(val, index)
	// Distilling: the teacher runs once; each (w, T) setting is a variant of
	// the search.
	var teacher []float32
	settings := opts.Distill.settings()
	if opts.Distill != nil {
		if teacher, err = teacherDistribution(ctx, opts, ds, labels, train); err != nil {
			return nil, err
		}
	}
	var vocab *featurizer.Vocab
	numNgram := 1 // only the padding row when n-grams are off
	if opts.uses(FeaturesNgram) {
		ext, err := featurizer.NewExtractor(opts.Featurizer)
		if err != nil {
			return nil, err
		}
		if vocab, err = ext.Fit(texts(train)); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		fz, err := featurizer.New(opts.Featurizer, vocab)
		if err != nil {
			return nil, err
		}
		trX = Featurize(fz, train, opts.Workers)
		vaX = Featurize(fz, val, opts.Workers)
		numNgram = vocab.Size()
		log.Info("featurised", "features", vocab.Size(), "seconds", time.Since(start).Seconds())
	}
	numFeatures := numNgram

	// Embeddings are computed once; each scale in the grid reuses them.
	type variant struct {
		scale    float64
		trX, vaX []featurizer.Vector
	}
	variants := []variant{{scale: 0, trX: trX, vaX: vaX}}
	var dim int
	var trE, vaE []float32
	var embedder Embedder
	if opts.uses(FeaturesEncoder) {
		embedder = opts.Encoder.Embedder
		dim = opts.Encoder.Embedder.Dim()
		prog.report(StageEmbedding, 0.15)
		embStart := time.Now()
		trE, err = opts.Encoder.Embedder.EmbedTexts(ctx, texts(train))
		if err != nil {
			return nil, fmt.Errorf("train: embed training texts: %w", err)
		}
		vaE, err = opts.Encoder.Embedder.EmbedTexts(ctx, texts(val))
		if err != nil {
			return nil, fmt.Errorf("train: embed validation texts: %w", err)
		}
		log.Info("embedded", "texts", len(train)+len(val), "dim", dim, "seconds", time.Since(embStart).Seconds())
		variants = variants[:0]
		for _, sc := range opts.EncoderScales {
			variants = append(variants, variant{scale: sc,
				trX: featurizer.AppendDense(trX, trE, dim, numNgram, float32(sc)),
				vaX: featurizer.AppendDense(vaX, vaE, dim, numNgram, float32(sc))})
		}
		numFeatures = numNgram + dim
	}

	prog.trials = len(variants) * len(settings) * len(opts.Losses) * len(opts.LearningRates) * len(opts.L2s)
	prog.report(StageSearching, 0.20)
	var trials []bundle.Trial
	var best candidate
	var bestSetting *distillSetting
	bestVariant := -1
	for vi, v := range variants {
		for _, st := range settings {
			var soft []float32
			if st != nil {
				soft = softTargets(teacher, trY, len(labels), *st)
			}
			ts, b, err := search(ctx, opts, v.trX, trY, soft, v.vaX, vaY, numFeatures, labels, prog.trialDone)
			if err != nil {
				return nil, err
			}
			for i := range ts {
				if opts.uses(FeaturesEncoder) {
					ts[i].Params["encoder_scale"] = v.scale
				}
				if st != nil {
					ts[i].Params["distill_weight"], ts[i].Params["distill_temperature"] = st.weight, st.temperature
				}
			}
			trials = append(trials, ts...)
			if bestVariant < 0 || better(b, best) {
				best, bestVariant, bestSetting = b, vi, st
			}
		}
	}
	trX, vaX = variants[bestVariant].trX, variants[bestVariant].vaX
	valReport := evaluate(best.model, vaX, vaY, labels)
	trainReport := evaluate(best.model, trX, trY, labels)

	prog.report(StageExporting, 0.92)
	m, onnxBytes, extra, err := exportHead(opts, labels, best.model, best.params, numNgram, dim, variants[bestVariant].scale)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	m.Metrics = bundle.Metrics{Validation: valReport, TrainAcc: trainReport.Accuracy, Search: trials}
	if d := opts.Distill; d != nil {
		tm := d.Teacher.Manifest()
		m.HyperParams["distill_from"] = cmp.Or(d.Source, tm.Name+" "+tm.Version)
		m.HyperParams["distill_teacher_val_accuracy"] = tm.Metrics.Validation.Accuracy
		m.HyperParams["distill_weight"] = bestSetting.weight
		m.HyperParams["distill_temperature"] = bestSetting.temperature
	}
	extra = append(extra, describe(&m, best.model, evidence{labels: labels, texts: texts(val), x: vaX, y: vaY,
		ngram: opts.uses(FeaturesNgram), emb: vaE, trE: trE, trY: trY, dim: dim, embedder: embedder,
		window: opts.MonitorWindow, seed: opts.Seed, target: opts.AbstainPrecision}, log)...)
	m.Training = trainingRecord(opts, ds, len(train), len(val), start)
	if ftd := opts.fineTuned; ftd != nil {
		// The head of a fine-tuning run: the bundle tells the whole run.
		maps.Copy(m.HyperParams, ftd.params)
		m.Metrics.Search = append([]bundle.Trial{ftd.trial}, m.Metrics.Search...)
		m.Encoder.Source = ftd.source
		m.Training.Seconds = time.Since(ftd.start).Seconds()
		extra = append(extra, ftd.files...)
	}
	if err := bundle.Write(opts.OutDir, &m, vocab, onnxBytes, extra...); err != nil {
		return nil, err
	}
	log.Info("model written", "dir", opts.OutDir, "val_accuracy", valReport.Accuracy, "val_macro_f1", valReport.MacroF1,
		"params", m.HyperParams, "seconds", m.Training.Seconds)
	prog.report(StageWritten, 1)
	return &Result{Dir: opts.OutDir, Manifest: m}, nil
}

// trainingRecord is the bundle's account of the run's data and split.
func trainingRecord(opts Options, ds *dataset.Dataset, trainRows, valRows int, start time.Time) bundle.Training {
	return bundle.Training{DataPath: opts.DataPath, DataSHA256: ds.SHA256, TextColumn: opts.TextColumn,
		LabelColumn: opts.LabelColumn, Rows: len(ds.Examples), TrainRows: trainRows, ValRows: valRows,
		Seed: opts.Seed, ValFraction: opts.ValFraction, GoVersion: runtime.Version(), Seconds: time.Since(start).Seconds()}
}

// loadSplit loads the training data and carves the stratified validation
// split every model kind is chosen on.
func loadSplit(opts Options) (ds *dataset.Dataset, labels []string, train, val []dataset.Example, err error) {
	ds, err = dataset.Load(opts.DataPath, dataset.Options{TextColumn: opts.TextColumn, LabelColumn: opts.LabelColumn})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("train: %w", err)
	}
	labels = dataset.Labels(ds.Examples)
	if len(labels) < 2 {
		return nil, nil, nil, nil, fmt.Errorf("train: %s has %d distinct label(s) in column %q; need at least 2", opts.DataPath, len(labels), opts.LabelColumn)
	}
	train, val, err = dataset.StratifiedSplit(ds.Examples, opts.ValFraction, opts.Seed)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("train: %w", err)
	}
	opts.Logger.Info("data loaded", "path", opts.DataPath, "rows", len(ds.Examples), "labels", len(labels), "train", len(train), "validation", len(val))
	return ds, labels, train, val, nil
}

// labelIndex maps each label to its id (its position in labels).
func labelIndex(labels []string) map[string]int {
	index := make(map[string]int, len(labels))
	for i, l := range labels {
		index[l] = i
	}
	return index
}

// exportHead turns a trained head into its ONNX graph and manifest (and the
// encoder files a bundle copies in); Train and Tune fill in Metrics and
// Training. opts supplies the name, version, features and featuriser config.
func exportHead(opts Options, labels []string, model *Linear, hp HyperParams, numNgram, dim int, scale float64) (bundle.Manifest, []byte, []bundle.CopyFile, error) {
	numFeatures := numNgram
	if opts.uses(FeaturesEncoder) {
		numFeatures += dim
	}
	kind := bundle.KindLinear
	switch {
	case opts.uses(FeaturesEncoder) && opts.uses(FeaturesNgram):
		kind = bundle.KindHybrid
	case opts.uses(FeaturesEncoder):
		kind = bundle.KindEncoder
	}
	g := &onnxgraph.LinearSoftmax{
		NumFeatures: numFeatures, NumClasses: len(labels), Weights: model.W, Bias: model.B,
		ProducerVersion: "triage " + bundle.FormatVersionString(),
		DocString:       fmt.Sprintf("Triage %s classifier head %s %s", kind, opts.Name, opts.Version),
		Metadata:        map[string]string{"name": opts.Name, "version": opts.Version},
	}
	onnxBytes, err := g.Marshal()
	if err != nil {
		return bundle.Manifest{}, nil, nil, fmt.Errorf("export ONNX: %w", err)
	}
	m := bundle.Manifest{
		Name: opts.Name, Version: opts.Version, CreatedAt: time.Now().UTC().Truncate(time.Second),
		Labels: labels, Featurizer: opts.Featurizer,
		Graph: bundle.Graph{Kind: kind, Opset: onnxgraph.Opset, NumFeatures: numFeatures, NumClasses: len(labels),
			InputIDs: onnxgraph.InputIDs, InputWeight: onnxgraph.InputWeights, Output: onnxgraph.OutputProbs},
		HyperParams: map[string]any{"loss": hp.Loss, "learning_rate": hp.LearningRate, "l2": hp.L2, "epochs": hp.Epochs,
			"optimizer": "adagrad", "max_epochs": opts.MaxEpochs, "patience": opts.Patience},
	}
	if !opts.uses(FeaturesNgram) {
		m.Featurizer = featurizer.Config{}
	}
	var extra []bundle.CopyFile
	if e := opts.Encoder; e != nil && opts.uses(FeaturesEncoder) {
		file, err := encoderdir.VariantFile(e.Variant)
		if err != nil {
			return bundle.Manifest{}, nil, nil, err
		}
		em := e.Manifest
		m.Encoder = &bundle.EncoderSpec{Source: e.Dir, Variant: cmp.Or(e.Variant, encoderdir.VariantFP32), Dim: dim,
			MaxLength: em.MaxLength, Lowercase: em.Lowercase, StripAccents: em.StripAccents,
			ClsToken: em.ClsToken, SepToken: em.SepToken,
			InputIDs: em.InputIDs, InputMask: em.InputMask, Output: em.Output,
			FeatureOffset: numNgram, Scale: float32(scale)}
		m.HyperParams["encoder_scale"] = scale
		extra = []bundle.CopyFile{{Name: bundle.EncoderFile, From: filepath.Join(e.Dir, file), SHA256: em.Files[file]},
			{Name: bundle.VocabFile, From: filepath.Join(e.Dir, encoderdir.VocabFile), SHA256: em.Files[encoderdir.VocabFile]}}
	}
	return m, onnxBytes, extra, nil
}

func texts(exs []dataset.Example) []string {
	out := make([]string, len(exs))
	for i, e := range exs {
		out[i] = e.Text
	}
	return out
}

func labelIDs(exs []dataset.Example, index map[string]int) []int {
	out := make([]int, len(exs))
	for i, e := range exs {
		out[i] = index[e.Label]
	}
	return out
}

// Featurize transforms examples' texts in parallel.
func Featurize(fz *featurizer.Featurizer, exs []dataset.Example, workers int) []featurizer.Vector {
	xs := make([]featurizer.Vector, len(exs))
	var wg sync.WaitGroup
	chunk := (len(exs) + workers - 1) / max(workers, 1)
	for lo := 0; lo < len(exs); lo += max(chunk, 1) {
		hi := min(lo+chunk, len(exs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				xs[i] = fz.Transform(exs[i].Text)
			}
		})
	}
	wg.Wait()
	return xs
}

func evaluate(m *Linear, xs []featurizer.Vector, ys []int, labels []string) scoring.Report {
	z := make([]float32, m.NumClasses)
	pred := make([]int, len(xs))
	for i, x := range xs {
		pred[i] = m.Predict(x, z)
	}
	r, _ := scoring.Score(labels, ys, pred) // lengths match by construction
	return r
}

type candidate struct {
	params HyperParams
	model  *Linear
	report scoring.Report
}

// better orders candidates: validation accuracy, then macro-F1, then fewer
// epochs (cheaper and less fitted to the training set).
func better(a, b candidate) bool {
	if a.report.Accuracy != b.report.Accuracy {
		return a.report.Accuracy > b.report.Accuracy
	}
	if a.report.MacroF1 != b.report.MacroF1 {
		return a.report.MacroF1 > b.report.MacroF1
	}
	return a.params.Epochs < b.params.Epochs
}

// search trains every grid point (in parallel, opts.Workers at a time),
// picking each one's epoch by validation score with early stopping;
// trialDone is called as each grid point finishes.
func search(ctx context.Context, opts Options, trX []featurizer.Vector, trY []int, soft []float32, vaX []featurizer.Vector, vaY []int,
	numFeatures int, labels []string, trialDone func()) ([]bundle.Trial, candidate, error) {
	var grid []HyperParams
	for _, loss := range opts.Losses {
		for _, lr := range opts.LearningRates {
			for _, l2 := range opts.L2s {
				grid = append(grid, HyperParams{Loss: loss, LearningRate: lr, L2: l2})
			}
		}
	}
	results := make([]candidate, len(grid))
	curves := make([][]bundle.EpochScore, len(grid))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	for i, hp := range grid {
		g.Go(func() error {
			best := candidate{params: hp}
			stale := 0
			_, err := fit(ctx, trX, trY, soft, numFeatures, len(labels), hp, opts.MaxEpochs, opts.Seed+uint64(i), func(epoch int, m *Linear) bool {
				r := evaluate(m, vaX, vaY, labels)
				curves[i] = append(curves[i], bundle.EpochScore{Epoch: epoch, ValAccuracy: r.Accuracy, ValMacroF1: r.MacroF1})
				c := candidate{params: hp, report: r}
				c.params.Epochs = epoch
				if best.model == nil || better(c, best) {
					c.model = m.clone()
					best, stale = c, 0
				} else {
					stale++
				}
				opts.Logger.Debug("epoch", "loss", hp.Loss, "lr", hp.LearningRate, "l2", hp.L2, "epoch", epoch, "val_accuracy", r.Accuracy)
				return stale < opts.Patience
			})
			if err != nil {
				return fmt.Errorf("train %+v: %w", hp, err)
			}
			results[i] = best
			opts.Logger.Info("trial done", "loss", hp.Loss, "learning_rate", hp.LearningRate, "l2", hp.L2,
				"best_epoch", best.params.Epochs, "val_accuracy", best.report.Accuracy, "val_macro_f1", best.report.MacroF1)
			trialDone()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, candidate{}, err
	}
	trials := make([]bundle.Trial, len(results))
	for i, r := range results {
		trials[i] = bundle.Trial{Params: map[string]any{"loss": r.params.Loss, "learning_rate": r.params.LearningRate, "l2": r.params.L2},
			BestEpoch: r.params.Epochs, ValAccuracy: r.report.Accuracy, ValMacroF1: r.report.MacroF1, Curve: curves[i]}
	}
	best := slices.MinFunc(results, func(a, b candidate) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return trials, best, nil
}
