package trainer

// Hyper-parameter tuning: random search with successive halving, in
// Hyperband's brackets.
//
// Why this method: random search covers a mixed space (discrete featuriser
// settings, a categorical loss, log-scaled rates) without assumptions, and
// successive halving spends most epochs on the settings that look best after
// a few, which is where the time goes (one Banking77 epoch is ~1 s on one
// core). TPE would need a density model per parameter and its proposals
// depend on the order results arrive, so parallel runs would stop being
// reproducible; synchronous halving decides each rung from a full set of
// results and gives the same table for a seed and trial count whatever the
// number of workers.
//
// Shape: rung r trains to Eta^r epochs (1, 3, 9, 27 with the defaults,
// capped at MaxEpochs) and only the best 1/Eta of a rung continue, from
// where they stopped, to the next. Judging after one epoch favours settings
// that learn fast over ones that end best (on Banking77, hinge over
// logistic loss), so, as in Hyperband, brackets take turns starting at
// rung 0, 1, ... up to the top rung, where a bracket is plain random search
// with early stopping; sizes keep the brackets' costs alike (27, 12, 6, 4
// trials with the defaults). A trial that can no longer reach the top 1/Eta
// of its rung is stopped as soon as that is certain, so the models waiting
// for a rung's verdict stay few. Brackets overlap: the next starts once all
// of the current one's trials have started, and the worker pool serves
// older trials first, so workers left idle by narrow top rungs train the
// next bracket.

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/scoring"
)

// TuneOptions configure a tuning run. Zero values are filled by Validate.
type TuneOptions struct {
	DataPath    string
	TextColumn  string // default "text"
	LabelColumn string // default "label"
	OutDir      string
	Name        string // default: base name of OutDir
	Version     string // default: UTC time

	Seed uint64
	// HoldoutFraction of each label is kept out of the search and the refit
	// so the refit's gain can be measured; default 0.1. The bundle records
	// it as its validation split, so `triage eval --split validation`
	// scores the shipped model on exactly this slice.
	HoldoutFraction float64
	// ValFraction of what remains is the validation split the search
	// ranks trials on; default 0.1.
	ValFraction float64

	// Trials caps the search trials (the defaults' grid is extra). 0 means
	// as many as Budget allows, or 81 when Budget is 0 too.
	Trials int
	// Budget bounds the time from the start of the run to the end of the
	// search (loading, featurising, the defaults' baseline and the search);
	// the final fits come on top. 0 means no limit. Trials running when it
	// ends are stopped and kept with the scores they had.
	Budget    time.Duration
	Workers   int // trials trained in parallel; default GOMAXPROCS
	MaxEpochs int // epochs of the top rung; default 27
	Patience  int // a trial stops after this many epochs without validation gain; default 3
	Eta       int // halving rate: 1/Eta of a rung is promoted; default 3

	Features []string // as Options.Features
	Encoder  *EncoderSource
	Logger   *slog.Logger
	// AbstainPrecision is as Options.AbstainPrecision, the threshold
	// chosen on the hold-out slice.
	AbstainPrecision float64
}

// Trial sources and states.
const (
	SourceSearch   = "search"   // drawn by the random search
	SourceDefaults = "defaults" // today's `triage train` grid, the baseline

	TrialCompleted = "completed" // reached its bracket's top rung
	TrialPruned    = "pruned"    // not promoted past a lower rung
	TrialBudget    = "budget"    // stopped by the time budget
)

// TuneParams is one point of the search space.
type TuneParams struct {
	Featurizer   featurizer.Config `json:"featurizer"`              // zero without n-gram features
	EncoderScale float64           `json:"encoder_scale,omitempty"` // with encoder features only
	Loss         string            `json:"loss"`
	LearningRate float64           `json:"learning_rate"`
	L2           float64           `json:"l2"`
}

// TuneTrial is one trial and how far it got.
type TuneTrial struct {
	Source  string     `json:"source"`
	Index   int        `json:"index"`   // search order; grid order for the defaults
	Bracket int        `json:"bracket"` // -1 for the defaults' grid
	Params  TuneParams `json:"params"`
	Seed    uint64     `json:"seed"` // the optimiser's shuffling seed, reused by the refit
	// Rung is the highest rung the trial reached (0-based); Epochs the
	// epochs it trained; BestEpoch the one that scored best on validation.
	Rung         int     `json:"rung"`
	Epochs       int     `json:"epochs"`
	BestEpoch    int     `json:"best_epoch"`
	ValAccuracy  float64 `json:"val_accuracy"`
	ValMacroF1   float64 `json:"val_macro_f1"`
	Status       string  `json:"status"`
	EarlyStopped bool    `json:"early_stopped"` // stopped by Patience
	// Curve is the validation score after each epoch trained.
	Curve []bundle.EpochScore `json:"curve,omitempty"`
}

// Score is accuracy and macro-F1 on one split.
type Score struct {
	Accuracy float64 `json:"accuracy"`
	MacroF1  float64 `json:"macro_f1"`
}

// HoldoutReport scores models on the slice kept out of search and refit.
type HoldoutReport struct {
	N         int   `json:"n"`
	Defaults  Score `json:"defaults"`   // best of the defaults' grid, fitted on the training split
	TrainOnly Score `json:"train_only"` // chosen setting, fitted on the training split
	Refit     Score `json:"refit"`      // chosen setting, refitted on training + validation (the bundle)
}

// TuneResult is what a tuning run found and wrote.
type TuneResult struct {
	Dir      string
	Manifest bundle.Manifest
	Best     TuneTrial   // the chosen trial (from the search or the defaults' grid)
	Defaults TuneTrial   // the best of the defaults' grid
	Trials   []TuneTrial // the defaults' grid, then every search trial in index order
	// SearchTrials counts search trials that trained; Pruned and
	// StoppedByBudget those of them that stopped early for each reason.
	SearchTrials, Pruned, StoppedByBudget int
	TrainRows, ValRows                    int // the search's split (the hold-out slice is Holdout.N)
	Featurisations                        int // distinct featurisations the search computed
	PeakWorkers                           int // most trials training at once
	Holdout                               HoldoutReport
	SearchSeconds, Seconds                float64
}

// Validate fills defaults and reports every invalid option at once.
func (o *TuneOptions) Validate() error {
	if o.HoldoutFraction == 0 {
		o.HoldoutFraction = 0.1
	}
	if o.MaxEpochs == 0 {
		o.MaxEpochs = 27
	}
	if o.Eta == 0 {
		o.Eta = 3
	}
	if o.Trials == 0 && o.Budget == 0 {
		o.Trials = 81
	}
	base := o.options()
	errs := []error{base.Validate()}
	o.TextColumn, o.LabelColumn, o.Name, o.Version = base.TextColumn, base.LabelColumn, base.Name, base.Version
	o.ValFraction, o.Patience, o.Workers, o.Logger, o.Features = base.ValFraction, base.Patience, base.Workers, base.Logger, base.Features
	if o.HoldoutFraction <= 0 || o.HoldoutFraction >= 0.5 {
		errs = append(errs, fmt.Errorf("--holdout-fraction %v: must be in (0, 0.5)", o.HoldoutFraction))
	}
	if o.Trials < 0 {
		errs = append(errs, fmt.Errorf("--trials %d: must be >= 0", o.Trials))
	}
	if o.Budget < 0 {
		errs = append(errs, fmt.Errorf("--budget %v: must be >= 0", o.Budget))
	}
	if o.Eta < 2 || o.Eta > 10 {
		errs = append(errs, fmt.Errorf("--eta %d: must be 2..10", o.Eta))
	}
	return errors.Join(errs...)
}

// options is o as training Options: what Train's validation, the defaults'
// baseline and the bundle export share with tuning.
func (o *TuneOptions) options() Options {
	return Options{DataPath: o.DataPath, TextColumn: o.TextColumn, LabelColumn: o.LabelColumn, OutDir: o.OutDir,
		Name: o.Name, Version: o.Version, Seed: o.Seed, ValFraction: o.ValFraction, MaxEpochs: o.MaxEpochs,
		Patience: o.Patience, Workers: o.Workers, Features: o.Features, Encoder: o.Encoder, Logger: o.Logger,
		AbstainPrecision: o.AbstainPrecision}
}

// bracketPlan is Hyperband's bracket i: the rung its trials start at and
// how many trials it has, so that brackets cost about the same.
func bracketPlan(i, rungs, eta int) (first, n int) {
	first = i % rungs
	s := rungs - 1 - first // halvings the bracket does
	n = int(math.Ceil(float64(rungs) / float64(s+1) * math.Pow(float64(eta), float64(s))))
	return first, n
}

// rungEpochs are the epochs each rung trains to: 1, Eta, Eta², ... capped
// at maxEpochs, which is always the last.
func rungEpochs(maxEpochs, eta int) []int {
	var out []int
	for e := 1; e < maxEpochs; e *= eta {
		out = append(out, e)
	}
	return append(out, maxEpochs)
}

// featGroup trials of a bracket share each sampled featuriser setting (and
// encoder scale) and differ in the optimiser's settings, so one
// featurisation, the costly step, serves several trials.
const featGroup = 3

// sampleParams draws trial i's setting; group is the index of the first
// trial of its featuriser group. Each trial and each group has its own
// random stream, so a setting depends only on the seed and the indices,
// not on how many trials run or in which order.
func sampleParams(seed uint64, group, i int, ngram, encoder bool) TuneParams {
	g := rand.New(rand.NewPCG(seed, 0x67726f7570000000^uint64(group)))
	t := rand.New(rand.NewPCG(seed, 0x747269616c000000^uint64(i)))
	var p TuneParams
	if ngram {
		p.Featurizer = featurizer.DefaultConfig()
		p.Featurizer.WordNgramMax = 1 + g.IntN(3)
		p.Featurizer.CharNgramMin = 1 + g.IntN(2)
		p.Featurizer.CharNgramMax = 3 + g.IntN(3)
		p.Featurizer.HashBits = 18 + g.IntN(7)
		p.Featurizer.MinDF = 1 + g.IntN(2)
		p.Featurizer.WordShare = round3(0.3 + 0.4*g.Float64())
		if g.IntN(2) == 1 {
			p.Featurizer.Stem = "english"
		}
	}
	if encoder {
		p.EncoderScale = logUniform(g, 0.3, 10)
	}
	p.Loss = []string{LossLogistic, LossHinge}[t.IntN(2)]
	p.LearningRate = logUniform(t, 0.01, 1)
	if t.IntN(4) > 0 { // a quarter of trials try no L2 at all
		p.L2 = logUniform(t, 1e-8, 1e-3)
	}
	return p
}

func logUniform(r *rand.Rand, lo, hi float64) float64 {
	return round3(math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo))))
}

// round3 keeps 3 significant digits: the table stays readable and nothing
// this coarse search measures depends on the 4th.
func round3(x float64) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 3, 64), 64)
	return f
}

// TuneTrain adapts Tune to Train's signature for callers that take a
// training function (retraining): the data, output, name, seed, features
// and encoder come from opts; budget bounds the search.
func TuneTrain(budget time.Duration) func(ctx context.Context, opts Options) (*Result, error) {
	return func(ctx context.Context, opts Options) (*Result, error) {
		res, err := Tune(ctx, TuneOptions{DataPath: opts.DataPath, TextColumn: opts.TextColumn, LabelColumn: opts.LabelColumn,
			OutDir: opts.OutDir, Name: opts.Name, Version: opts.Version, Seed: opts.Seed, Budget: budget,
			Workers: opts.Workers, Features: opts.Features, Encoder: opts.Encoder, Logger: opts.Logger, AbstainPrecision: opts.AbstainPrecision})
		if err != nil {
			return nil, err
		}
		return &Result{Dir: res.Dir, Manifest: res.Manifest}, nil
	}
}

// Tune searches hyper-parameters on a validation split, refits the best
// setting on training + validation and writes that bundle to opts.OutDir,
// with every trial in its Metrics.Search.
func Tune(ctx context.Context, opts TuneOptions) (TuneResult, error) {
	if err := opts.Validate(); err != nil {
		return TuneResult{}, fmt.Errorf("tune options: %w", err)
	}
	start := time.Now()
	r := &tuneRun{opts: opts, base: opts.options(), log: opts.Logger, cache: &featCache{m: map[featKey]*featEntry{}},
		slots: newSlots(opts.Workers), rungs: rungEpochs(opts.MaxEpochs, opts.Eta)}
	if err := r.base.Validate(); err != nil { // fills the same defaults Train would
		return TuneResult{}, fmt.Errorf("tune options: %w", err)
	}
	ds, err := dataset.Load(opts.DataPath, dataset.Options{TextColumn: opts.TextColumn, LabelColumn: opts.LabelColumn})
	if err != nil {
		return TuneResult{}, fmt.Errorf("tune: %w", err)
	}
	if err := r.load(ctx, ds); err != nil {
		return TuneResult{}, fmt.Errorf("tune: %w", err)
	}
	searchCtx := ctx
	if opts.Budget > 0 {
		var cancel context.CancelFunc
		searchCtx, cancel = context.WithDeadline(ctx, start.Add(opts.Budget))
		defer cancel()
	}
	res := TuneResult{}
	defTrials, defModel, defSet, defScale, err := r.baseline(searchCtx)
	if err != nil {
		if ctx.Err() == nil && searchCtx.Err() != nil {
			return TuneResult{}, fmt.Errorf("tune: --budget %v ran out while measuring the defaults' baseline; allow more time", opts.Budget)
		}
		return TuneResult{}, fmt.Errorf("tune: defaults' baseline: %w", err)
	}
	res.Defaults = bestTrial(defTrials)
	res.Holdout.Defaults = r.holdoutScore(defModel, defSet, defScale)
	r.log.Info("defaults measured", "val_accuracy", res.Defaults.ValAccuracy, "val_macro_f1", res.Defaults.ValMacroF1,
		"params", res.Defaults.Params, "seconds", time.Since(start).Seconds())

	searchStart := time.Now()
	trials, err := r.search(searchCtx)
	if err != nil {
		return TuneResult{}, fmt.Errorf("tune: %w", err)
	}
	if ctx.Err() != nil { // interrupted, not out of budget: write nothing
		return TuneResult{}, fmt.Errorf("tune: %w", ctx.Err())
	}
	res.SearchSeconds = time.Since(searchStart).Seconds()
	res.Featurisations, res.PeakWorkers = r.cache.built, r.slots.peak
	res.TrainRows, res.ValRows = len(r.train), len(r.val)
	res.Trials = append(defTrials, trials...)
	for _, t := range trials {
		res.SearchTrials++
		switch t.Status {
		case TrialPruned:
			res.Pruned++
		case TrialBudget:
			res.StoppedByBudget++
		}
	}
	res.Best = bestTrial(res.Trials)
	r.log.Info("search done", "trials", res.SearchTrials, "pruned", res.Pruned, "stopped_by_budget", res.StoppedByBudget,
		"featurisations", res.Featurisations, "peak_parallel_trials", res.PeakWorkers, "seconds", res.SearchSeconds,
		"best_source", res.Best.Source, "best_index", res.Best.Index, "best_val_accuracy", res.Best.ValAccuracy)

	if err := r.refit(ctx, ds, &res, start); err != nil {
		return TuneResult{}, fmt.Errorf("tune: %w", err)
	}
	return res, nil
}

// tuneRun is one Tune call's shared state.
type tuneRun struct {
	opts  TuneOptions
	base  Options
	log   *slog.Logger
	cache *featCache
	slots *slots
	rungs []int

	labels                 []string
	train, val, holdout    []dataset.Example
	trY, vaY, hoY          []int
	trE, vaE, hoE          []float32 // embeddings, with encoder features
	dim                    int
	ngram, encoderFeatures bool
}

// load carves the hold-out slice, then the search's train/validation split
// from the rest (both stratified, seeded), and embeds every text once.
func (r *tuneRun) load(ctx context.Context, ds *dataset.Dataset) error {
	r.labels = dataset.Labels(ds.Examples)
	if len(r.labels) < 2 {
		return fmt.Errorf("%s has %d distinct label(s) in column %q; need at least 2", r.opts.DataPath, len(r.labels), r.opts.LabelColumn)
	}
	rest, holdout, err := dataset.StratifiedSplit(ds.Examples, r.opts.HoldoutFraction, r.opts.Seed)
	if err != nil {
		return fmt.Errorf("hold-out slice: %w", err)
	}
	train, val, err := dataset.StratifiedSplit(rest, r.opts.ValFraction, r.opts.Seed)
	if err != nil {
		return fmt.Errorf("validation split: %w", err)
	}
	r.train, r.val, r.holdout = train, val, holdout
	index := labelIndex(r.labels)
	r.trY, r.vaY, r.hoY = labelIDs(train, index), labelIDs(val, index), labelIDs(holdout, index)
	r.ngram, r.encoderFeatures = r.base.uses(FeaturesNgram), r.base.uses(FeaturesEncoder)
	r.log.Info("data loaded", "path", r.opts.DataPath, "rows", len(ds.Examples), "labels", len(r.labels),
		"train", len(train), "validation", len(val), "holdout", len(holdout))
	if r.encoderFeatures {
		start := time.Now()
		r.dim = r.base.Encoder.Embedder.Dim()
		for _, p := range []struct {
			exs []dataset.Example
			out *[]float32
		}{{train, &r.trE}, {val, &r.vaE}, {holdout, &r.hoE}} {
			if *p.out, err = r.base.Encoder.Embedder.EmbedTexts(ctx, texts(p.exs)); err != nil {
				return fmt.Errorf("embed texts: %w", err)
			}
		}
		r.log.Info("embedded", "texts", len(ds.Examples), "dim", r.dim, "seconds", time.Since(start).Seconds())
	}
	return nil
}

// part is examples with their embeddings (nil without encoder features).
type part struct {
	exs []dataset.Example
	emb []float32
}

// featSet is one featuriser setting applied: xs[i] are the head inputs of
// the i-th part featurise was given, the first of which fitted the vocabulary.
type featSet struct {
	fz                    *featurizer.Featurizer // nil without n-gram features
	vocab                 *featurizer.Vocab
	numNgram, numFeatures int
	xs                    [][]featurizer.Vector
}

// featurise fits the vocabulary of cfg on fit's texts and turns fit and
// each of more into head inputs, the embedding appended at scale.
func (r *tuneRun) featurise(cfg featurizer.Config, scale float64, workers int, fit part, more ...part) (*featSet, error) {
	parts := append([]part{fit}, more...)
	fs := &featSet{numNgram: 1, xs: make([][]featurizer.Vector, len(parts))}
	for i, p := range parts {
		fs.xs[i] = make([]featurizer.Vector, len(p.exs))
	}
	if r.ngram {
		ext, err := featurizer.NewExtractor(cfg)
		if err != nil {
			return nil, err
		}
		if fs.vocab, err = ext.Fit(texts(fit.exs)); err != nil {
			return nil, fmt.Errorf("featurise %+v: %w", cfg, err)
		}
		if fs.fz, err = featurizer.New(cfg, fs.vocab); err != nil {
			return nil, err
		}
		for i, p := range parts {
			fs.xs[i] = Featurize(fs.fz, p.exs, workers)
		}
		fs.numNgram = fs.vocab.Size()
	}
	fs.numFeatures = fs.numNgram
	if r.encoderFeatures {
		for i, p := range parts {
			fs.xs[i] = featurizer.AppendDense(fs.xs[i], p.emb, r.dim, fs.numNgram, float32(scale))
		}
		fs.numFeatures += r.dim
	}
	return fs, nil
}

// baseline runs today's `triage train` defaults (its grid, epochs and
// patience) on the search's split: the figure tuning has to beat. It
// returns the grid's trials, the best one's model and its features.
func (r *tuneRun) baseline(ctx context.Context) (trials []TuneTrial, model *Linear, fs *featSet, scale float64, err error) {
	def := Options{DataPath: r.opts.DataPath, OutDir: r.opts.OutDir, Seed: r.opts.Seed, Workers: r.opts.Workers,
		Features: r.base.Features, Encoder: r.base.Encoder, Logger: r.log.With("phase", "defaults")}
	if err := def.Validate(); err != nil {
		return nil, nil, nil, 0, err
	}
	scales := []float64{0}
	if r.encoderFeatures {
		scales = def.EncoderScales
	}
	cfg := featurizer.Config{}
	if r.ngram {
		cfg = def.Featurizer
	}
	var best candidate
	for _, sc := range scales {
		set, err := r.featurise(cfg, sc, r.opts.Workers, part{r.train, r.trE}, part{r.val, r.vaE})
		if err != nil {
			return nil, nil, nil, 0, err
		}
		ts, b, err := search(ctx, def, set.xs[0], r.trY, nil, set.xs[1], r.vaY, set.numFeatures, r.labels, func() {})
		if err != nil {
			return nil, nil, nil, 0, err
		}
		for i, t := range ts {
			// search seeds grid point i with Seed+i; the refit must reuse it.
			trials = append(trials, TuneTrial{Source: SourceDefaults, Index: len(trials), Bracket: -1,
				Params: TuneParams{Featurizer: cfg, EncoderScale: sc, Loss: t.Params["loss"].(string),
					LearningRate: t.Params["learning_rate"].(float64), L2: t.Params["l2"].(float64)},
				Seed: r.opts.Seed + uint64(i), BestEpoch: t.BestEpoch,
				ValAccuracy: t.ValAccuracy, ValMacroF1: t.ValMacroF1, Status: TrialCompleted, Curve: t.Curve})
		}
		if fs == nil || better(b, best) {
			best, fs, scale = b, set, sc
		}
	}
	return trials, best.model, fs, scale, nil
}

// holdoutScore scores a model fitted on the training split on the hold-out
// slice, featurised with fs's vocabulary.
func (r *tuneRun) holdoutScore(m *Linear, fs *featSet, scale float64) Score {
	xs := make([]featurizer.Vector, len(r.holdout))
	if fs.fz != nil {
		xs = Featurize(fs.fz, r.holdout, r.opts.Workers)
	}
	if r.encoderFeatures {
		xs = featurizer.AppendDense(xs, r.hoE, r.dim, fs.numNgram, float32(scale))
	}
	rep := evaluate(m, xs, r.hoY, r.labels)
	return Score{Accuracy: rep.Accuracy, MacroF1: rep.MacroF1}
}

// bestTrial is the trial `better` prefers; ties go to the earlier one.
func bestTrial(ts []TuneTrial) TuneTrial {
	var best TuneTrial
	var bc candidate
	for i, t := range ts {
		c := trialCandidate(t)
		if i == 0 || better(c, bc) {
			best, bc = t, c
		}
	}
	return best
}

func trialCandidate(t TuneTrial) candidate {
	return candidate{params: HyperParams{Epochs: t.BestEpoch}, report: scoring.Report{Accuracy: t.ValAccuracy, MacroF1: t.ValMacroF1}}
}

// search runs brackets until the trial cap or the budget is reached and
// returns every trial that trained, in index order.
func (r *tuneRun) search(ctx context.Context) ([]TuneTrial, error) {
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var (
		wg       sync.WaitGroup
		brackets []*bracket
	)
	for next := 0; r.opts.Trials == 0 || next < r.opts.Trials; {
		if ctx.Err() != nil {
			break
		}
		first, n := bracketPlan(len(brackets), len(r.rungs), r.opts.Eta)
		if r.opts.Trials > 0 {
			n = min(n, r.opts.Trials-next)
		}
		b := r.newBracket(len(brackets), first, next, n)
		brackets = append(brackets, b)
		r.log.Info("bracket started", "bracket", b.id, "trials", n, "first_trial", next, "rung_epochs", r.rungs[first:])
		for _, t := range b.trials {
			wg.Go(func() {
				if err := b.runTrial(ctx, t); err != nil {
					fail(err)
				}
			})
		}
		next += n
		// Start the next bracket once this one has nothing left to start,
		// so a time budget ends with few half-run brackets.
		select {
		case <-b.allStarted:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	var out []TuneTrial
	for _, b := range brackets {
		for _, t := range b.trials {
			if t.trained {
				out = append(out, t.TuneTrial)
			}
		}
	}
	return out, nil
}

// bracket is one successive-halving bracket.
type bracket struct {
	r          *tuneRun
	id, first  int // first: the rung its trials start at
	trials     []*trial
	mu         sync.Mutex
	rungs      []rungState
	started    int
	allStarted chan struct{} // closed once every trial has started or ended
	closeOnce  sync.Once
	done       sync.WaitGroup
}

func (b *bracket) startedOne() {
	b.mu.Lock()
	b.started++
	all := b.started == len(b.trials)
	b.mu.Unlock()
	if all {
		b.closeOnce.Do(func() { close(b.allStarted) })
	}
}

type rungState struct {
	expected, arrived int
	keep              int      // how many this rung promotes
	top               []*trial // best arrivals so far, ranked, at most keep
}

type trial struct {
	TuneTrial
	key     featKey
	hp      HyperParams
	best    candidate
	decide  chan bool // the rung's verdict: promoted or not
	trained bool      // at least one epoch evaluated
}

func (r *tuneRun) newBracket(id, firstRung, firstTrial, n int) *bracket {
	b := &bracket{r: r, id: id, first: firstRung, rungs: make([]rungState, len(r.rungs)), allStarted: make(chan struct{})}
	b.rungs[firstRung].expected = n
	for i := firstTrial; i < firstTrial+n; i++ {
		group := i - (i-firstTrial)%featGroup // groups never span brackets, whose trials hold the cache entries
		p := sampleParams(r.opts.Seed, group, i, r.ngram, r.encoderFeatures)
		t := &trial{TuneTrial: TuneTrial{Source: SourceSearch, Index: i, Bracket: id, Params: p,
			Seed: r.opts.Seed ^ (0x9e3779b97f4a7c15 * uint64(i+1))},
			key: featKey{p.Featurizer, p.EncoderScale}, hp: HyperParams{Loss: p.Loss, LearningRate: p.LearningRate, L2: p.L2},
			decide: make(chan bool, 1)}
		r.cache.ref(t.key) // held until the trial ends, so a group's data outlives its first trial
		b.trials = append(b.trials, t)
	}
	b.done.Add(n)
	return b
}

// ranksBefore orders a rung's trials: better validation score first, then
// the lower index, so the order is total and the verdicts reproducible.
func ranksBefore(a, b *trial) bool {
	if better(a.best, b.best) {
		return true
	}
	if better(b.best, a.best) {
		return false
	}
	return a.Index < b.Index
}

// arrive records t's score at the end of rung and waits for the verdict:
// true to train on to the next rung. A trial that falls out of the rung's
// best keep can never be promoted, so it is told at once and its model
// freed; the rest hear when the last trial of the rung arrives.
func (b *bracket) arrive(ctx context.Context, t *trial, rung int) bool {
	b.mu.Lock()
	rs := &b.rungs[rung]
	if rs.keep == 0 {
		rs.keep = max(1, rs.expected/b.r.opts.Eta)
	}
	at, _ := slices.BinarySearchFunc(rs.top, t, func(x, y *trial) int {
		if ranksBefore(x, y) {
			return -1
		}
		return 1
	})
	rs.top = slices.Insert(rs.top, at, t)
	if len(rs.top) > rs.keep {
		out := rs.top[rs.keep]
		rs.top = rs.top[:rs.keep]
		out.Status, out.Rung = TrialPruned, rung
		out.decide <- false
	}
	rs.arrived++
	if rs.arrived == rs.expected {
		b.rungs[rung+1].expected = len(rs.top)
		for _, p := range rs.top {
			p.decide <- true
		}
		b.r.log.Info("rung done", "bracket", b.id, "rung", rung, "epochs", b.r.rungs[rung], "trials", rs.expected,
			"promoted", len(rs.top), "best_val_accuracy", rs.top[0].best.report.Accuracy,
			"best_trial", rs.top[0].Index, "next_epochs", b.r.rungs[rung+1])
	}
	b.mu.Unlock()
	select {
	case ok := <-t.decide:
		return ok
	case <-ctx.Done():
		return false
	}
}

// runTrial trains t rung by rung until it is pruned, completes the top
// rung, or the budget ends. Errors are only those that end the whole run.
func (b *bracket) runTrial(ctx context.Context, t *trial) error {
	r := b.r
	defer b.done.Done()
	defer r.cache.unref(t.key)
	err := r.slots.acquire(ctx, t.Index)
	b.startedOne()
	if err != nil {
		return nil // never started: the budget ended first
	}
	held := true
	release := func() {
		if held {
			r.slots.release()
			held = false
		}
	}
	defer release()
	fs, err := r.cache.get(ctx, t.key, func() (*featSet, error) {
		return r.featurise(t.key.cfg, t.key.scale, 1, part{r.train, r.trE}, part{r.val, r.vaE})
	}, func(wait func() bool) bool { // wait for another trial's featurisation without holding a worker
		release()
		if !wait() || r.slots.acquire(ctx, t.Index) != nil {
			return false
		}
		held = true
		return true
	})
	if err != nil || fs == nil {
		return err
	}
	last := len(r.rungs) - 1
	rung, stale := b.first, 0
	_, err = fit(ctx, fs.xs[0], r.trY, nil, fs.numFeatures, len(r.labels), t.hp, r.opts.MaxEpochs, t.Seed, func(epoch int, m *Linear) bool {
		c := candidate{params: t.hp, report: evaluate(m, fs.xs[1], r.vaY, r.labels)}
		c.params.Epochs = epoch
		b.mu.Lock() // arrive reads best from other goroutines
		t.Curve = append(t.Curve, bundle.EpochScore{Epoch: epoch, ValAccuracy: c.report.Accuracy, ValMacroF1: c.report.MacroF1})
		if !t.trained || better(c, t.best) {
			t.best, stale = c, 0
		} else {
			stale++
		}
		t.trained, t.Epochs, t.Rung = true, epoch, rung
		b.mu.Unlock()
		if stale >= r.opts.Patience {
			t.EarlyStopped = true
			return false
		}
		if rung == last || epoch < r.rungs[rung] {
			return true
		}
		release()
		if !b.arrive(ctx, t, rung) {
			return false
		}
		rung++
		if r.slots.acquire(ctx, t.Index) != nil {
			return false
		}
		held = true
		return true
	})
	release()
	fs = nil // the model and features can go before the verdicts below
	// A trial that stopped early by Patience still stands in its rung and,
	// if promoted, in the next ones, with the score it reached.
	for err == nil && t.EarlyStopped && rung < last {
		if !b.arrive(ctx, t, rung) {
			break
		}
		rung++
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t.BestEpoch, t.ValAccuracy, t.ValMacroF1 = t.best.params.Epochs, t.best.report.Accuracy, t.best.report.MacroF1
	switch {
	case t.Status == TrialPruned:
	case err == nil && rung == last && (t.Epochs == r.opts.MaxEpochs || t.EarlyStopped):
		t.Status, t.Rung = TrialCompleted, last
	default:
		t.Status, t.Rung = TrialBudget, rung
	}
	r.log.Debug("trial done", "trial", t.Index, "bracket", b.id, "status", t.Status, "rung", t.Rung, "epochs", t.Epochs,
		"val_accuracy", t.ValAccuracy, "params", t.Params)
	return nil
}

// featKey identifies one featurisation of the search's split.
type featKey struct {
	cfg   featurizer.Config
	scale float64
}

// featCache shares featurised data between the trials of a run: an entry
// lives while a trial that uses it is unfinished.
type featCache struct {
	mu    sync.Mutex
	m     map[featKey]*featEntry
	built int
}

type featEntry struct {
	refs    int
	claimed bool          // someone is building it
	ready   chan struct{} // closed when set or err is final
	set     *featSet
	err     error
}

func (c *featCache) ref(k featKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	if e == nil {
		e = &featEntry{ready: make(chan struct{})}
		c.m[k] = e
	}
	e.refs++
}

func (c *featCache) unref(k featKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[k]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(c.m, k)
		}
	}
}

// get returns k's features, building them the first time. A caller that
// finds another building them calls park with a function that waits for
// them; park returns false to give up (the run is ending), and get then
// returns nil, nil.
func (c *featCache) get(ctx context.Context, k featKey, build func() (*featSet, error), park func(wait func() bool) bool) (*featSet, error) {
	c.mu.Lock()
	e := c.m[k]
	claimed := e.claimed
	e.claimed = true
	c.mu.Unlock()
	if !claimed {
		e.set, e.err = build()
		c.mu.Lock()
		c.built++
		c.mu.Unlock()
		close(e.ready)
	} else {
		select {
		case <-e.ready:
		default:
			if !park(func() bool {
				select {
				case <-e.ready:
					return true
				case <-ctx.Done():
					return false
				}
			}) {
				return nil, nil
			}
		}
	}
	return e.set, e.err
}

// slots is a counting semaphore that grants waiting callers lowest key
// first, so older brackets' promoted trials go before newer brackets' rung
// 0 and brackets finish in order. A free slot implies no waiters.
type slots struct {
	mu               sync.Mutex
	free, size, peak int
	waiting          waiters
}

type waiter struct {
	key, at int // at: position in the heap
	ch      chan struct{}
	granted bool
}

type waiters []*waiter

func (w waiters) Len() int           { return len(w) }
func (w waiters) Less(i, j int) bool { return w[i].key < w[j].key }
func (w waiters) Swap(i, j int) {
	w[i], w[j] = w[j], w[i]
	w[i].at, w[j].at = i, j
}
func (w *waiters) Push(x any) {
	x.(*waiter).at = len(*w)
	*w = append(*w, x.(*waiter))
}
func (w *waiters) Pop() any {
	old := *w
	x := old[len(old)-1]
	*w = old[:len(old)-1]
	return x
}

func newSlots(n int) *slots { return &slots{free: n, size: n} }

func (s *slots) acquire(ctx context.Context, key int) error {
	s.mu.Lock()
	if s.free > 0 {
		s.take()
		s.mu.Unlock()
		return nil
	}
	w := &waiter{key: key, ch: make(chan struct{})}
	heap.Push(&s.waiting, w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		if w.granted { // granted as we gave up: pass it on
			s.giveLocked()
		} else {
			heap.Remove(&s.waiting, w.at)
		}
		return ctx.Err()
	}
}

func (s *slots) take() {
	s.free--
	s.peak = max(s.peak, s.size-s.free)
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.giveLocked()
}

// giveLocked frees a slot and hands it to the first waiter, if any.
func (s *slots) giveLocked() {
	s.free++
	if len(s.waiting) > 0 {
		w := heap.Pop(&s.waiting).(*waiter)
		s.take()
		w.granted = true
		close(w.ch)
	}
}

// refit fits the chosen setting on the training split (for the hold-out
// comparison) and on training + validation (the bundle), then writes it.
func (r *tuneRun) refit(ctx context.Context, ds *dataset.Dataset, res *TuneResult, start time.Time) error {
	best := res.Best
	p := best.Params
	hp := HyperParams{Loss: p.Loss, LearningRate: p.LearningRate, L2: p.L2, Epochs: best.BestEpoch}
	workers := r.opts.Workers

	// Same data, setting, seed and epochs as the trial: the same model,
	// which the validation score below confirms.
	fs, err := r.featurise(p.Featurizer, p.EncoderScale, workers, part{r.train, r.trE}, part{r.val, r.vaE}, part{r.holdout, r.hoE})
	if err != nil {
		return err
	}
	m, err := fit(ctx, fs.xs[0], r.trY, nil, fs.numFeatures, len(r.labels), hp, hp.Epochs, best.Seed, nil)
	if err != nil {
		return err
	}
	if v := evaluate(m, fs.xs[1], r.vaY, r.labels); v.Accuracy != best.ValAccuracy {
		r.log.Warn("train-only refit does not reproduce the trial", "trial_val_accuracy", best.ValAccuracy, "refit_val_accuracy", v.Accuracy)
	}
	ho := evaluate(m, fs.xs[2], r.hoY, r.labels)
	res.Holdout.N = len(r.holdout)
	res.Holdout.TrainOnly = Score{Accuracy: ho.Accuracy, MacroF1: ho.MacroF1}

	all := slices.Concat(r.train, r.val)
	allY := slices.Concat(r.trY, r.vaY)
	fs, err = r.featurise(p.Featurizer, p.EncoderScale, workers, part{all, slices.Concat(r.trE, r.vaE)}, part{r.holdout, r.hoE})
	if err != nil {
		return err
	}
	m, err = fit(ctx, fs.xs[0], allY, nil, fs.numFeatures, len(r.labels), hp, hp.Epochs, best.Seed, nil)
	if err != nil {
		return err
	}
	hoRep := evaluate(m, fs.xs[1], r.hoY, r.labels)
	trainRep := evaluate(m, fs.xs[0], allY, r.labels)
	res.Holdout.Refit = Score{Accuracy: hoRep.Accuracy, MacroF1: hoRep.MacroF1}

	opts := r.base
	opts.Featurizer = p.Featurizer
	man, onnxBytes, extra, err := exportHead(opts, r.labels, m, hp, fs.numNgram, r.dim, p.EncoderScale)
	if err != nil {
		return err
	}
	if r.ngram {
		man.HyperParams["featurizer"] = p.Featurizer
	}
	man.HyperParams["refit"] = "train+validation"
	man.HyperParams["search"] = map[string]any{"method": "random search, successive halving", "eta": r.opts.Eta,
		"rung_epochs": r.rungs, "trials": res.SearchTrials, "pruned": res.Pruned, "stopped_by_budget": res.StoppedByBudget,
		"chosen":                map[string]any{"source": best.Source, "index": best.Index, "val_accuracy": best.ValAccuracy, "val_macro_f1": best.ValMacroF1},
		"defaults_val_accuracy": res.Defaults.ValAccuracy, "seconds": res.SearchSeconds}
	trials := make([]bundle.Trial, len(res.Trials))
	for i, t := range res.Trials {
		trials[i] = t.bundleTrial(r.ngram, r.encoderFeatures)
	}
	// The bundle's validation is the hold-out slice: the only data the
	// refitted model has not seen.
	man.Metrics = bundle.Metrics{Validation: hoRep, TrainAcc: trainRep.Accuracy, Search: trials}
	// The drift reference and the abstention threshold, too, are measured
	// on the hold-out slice: the refit has seen the validation split.
	var embedder Embedder
	if r.encoderFeatures {
		embedder = r.base.Encoder.Embedder
	}
	extra = append(extra, describe(&man, m, evidence{labels: r.labels, texts: texts(r.holdout), x: fs.xs[1], y: r.hoY,
		ngram: r.ngram, emb: r.hoE, trE: slices.Concat(r.trE, r.vaE), trY: allY, dim: r.dim, embedder: embedder,
		window: r.base.MonitorWindow, seed: r.opts.Seed, target: r.base.AbstainPrecision}, r.log)...)
	man.Training = bundle.Training{DataPath: r.opts.DataPath, DataSHA256: ds.SHA256, TextColumn: r.opts.TextColumn,
		LabelColumn: r.opts.LabelColumn, Rows: len(ds.Examples), TrainRows: len(all), ValRows: len(r.holdout),
		Seed: r.opts.Seed, ValFraction: r.opts.HoldoutFraction, GoVersion: runtime.Version()}
	res.Seconds = time.Since(start).Seconds()
	man.Training.Seconds = res.Seconds
	if err := bundle.Write(r.opts.OutDir, &man, fs.vocab, onnxBytes, extra...); err != nil {
		return err
	}
	res.Dir, res.Manifest = r.opts.OutDir, man
	r.log.Info("model written", "dir", r.opts.OutDir, "holdout_train_only_accuracy", res.Holdout.TrainOnly.Accuracy,
		"holdout_refit_accuracy", res.Holdout.Refit.Accuracy, "params", man.HyperParams, "seconds", res.Seconds)
	return nil
}

// bundleTrial is t as a row of Metrics.Search: the setting, then how far
// the trial got.
func (t TuneTrial) bundleTrial(ngram, encoder bool) bundle.Trial {
	p := map[string]any{"source": t.Source, "trial": t.Index, "loss": t.Params.Loss,
		"learning_rate": t.Params.LearningRate, "l2": t.Params.L2,
		"status": t.Status, "pruned": t.Status == TrialPruned}
	if t.Source == SourceSearch { // the defaults' grid has no rungs; search() does not report epochs trained
		p["bracket"], p["rung"], p["epochs_trained"], p["early_stopped"] = t.Bracket, t.Rung, t.Epochs, t.EarlyStopped
	}
	if ngram {
		c := t.Params.Featurizer
		p["word_ngram_max"], p["char_ngram_min"], p["char_ngram_max"] = c.WordNgramMax, c.CharNgramMin, c.CharNgramMax
		p["hash_bits"], p["min_df"], p["word_share"], p["stem"] = c.HashBits, c.MinDF, c.WordShare, cmp.Or(c.Stem, "none")
	}
	if encoder {
		p["encoder_scale"] = t.Params.EncoderScale
	}
	return bundle.Trial{Params: p, BestEpoch: t.BestEpoch, ValAccuracy: t.ValAccuracy, ValMacroF1: t.ValMacroF1, Curve: t.Curve}
}
