package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/trainer"
)

// Active-learning strategies: how each round's batch of labels is chosen
// from the unlabelled pool.
const (
	StrategyMargin = "margin" // smallest top-2 probability margin first
	StrategyRandom = "random" // uniformly at random: the baseline
)

// ActiveConfig configures Active. Zero values take the defaults noted.
type ActiveConfig struct {
	Data        string
	TextColumn  string // default "text"
	LabelColumn string // default "label"

	// EvalFraction of each label's rows is held out for evaluation and is
	// never labelled or trained on; default 0.2.
	EvalFraction float64
	// SeedFraction of each label's remaining rows starts labelled; the
	// rest is the unlabelled pool. Default 0.1.
	SeedFraction float64
	// Batch is labels added per round; default 5% of the rows outside the
	// evaluation slice.
	Batch  int
	Rounds int // default 8
	// Seeds is how many runs each strategy is averaged over; run s uses
	// seed s for the training order and, for random, its picks. Default 3.
	Seeds     int
	SplitSeed uint64 // fixes the evaluation/seed/pool split

	// Fixed, fast hyper-parameters: there is no validation split to search
	// on, and every retrain must cost the same for both strategies.
	LearningRate float64 // default 0.2
	L2           float64 // default 0
	Epochs       int     // default 8

	Workers int // concurrent runs; default GOMAXPROCS

	// OnStart, if set, is called once the data is split and featurised.
	OnStart func(ActiveInfo)
}

// ActiveInfo describes what Active simulates.
type ActiveInfo struct {
	Rows       int     `json:"rows"`
	Classes    int     `json:"classes"`
	Features   int     `json:"features"`
	Seed       int     `json:"seed_labels"`
	Pool       int     `json:"pool"`
	Eval       int     `json:"eval"`
	Batch      int     `json:"batch"`
	Rounds     int     `json:"rounds"`
	Seeds      int     `json:"seeds"`
	Epochs     int     `json:"epochs"`
	LR         float64 `json:"learning_rate"`
	L2         float64 `json:"l2"`
	GOMAXPROCS int     `json:"gomaxprocs"`
}

// ActiveRow is evaluation-slice quality at one number of labels, each
// strategy's figure the mean over seeds.
type ActiveRow struct {
	Labels          int       `json:"labels"`
	MarginAcc       float64   `json:"margin_accuracy"`
	RandomAcc       float64   `json:"random_accuracy"`
	DeltaAcc        float64   `json:"delta_accuracy"` // margin − random
	MarginF1        float64   `json:"margin_macro_f1"`
	RandomF1        float64   `json:"random_macro_f1"`
	DeltaF1         float64   `json:"delta_macro_f1"`
	MarginAccBySeed []float64 `json:"margin_accuracy_by_seed"`
	RandomAccBySeed []float64 `json:"random_accuracy_by_seed"`
}

// ActiveResult is the learning curve of both strategies.
type ActiveResult struct {
	Info    ActiveInfo  `json:"info"`
	Rows    []ActiveRow `json:"rows"`
	Seconds float64     `json:"seconds"`
}

func (c *ActiveConfig) defaults() error {
	c.TextColumn = cmp.Or(c.TextColumn, "text")
	c.LabelColumn = cmp.Or(c.LabelColumn, "label")
	c.EvalFraction = cmp.Or(c.EvalFraction, 0.2)
	c.SeedFraction = cmp.Or(c.SeedFraction, 0.1)
	c.Rounds = cmp.Or(c.Rounds, 8)
	c.Seeds = cmp.Or(c.Seeds, 3)
	c.LearningRate = cmp.Or(c.LearningRate, 0.2)
	c.Epochs = cmp.Or(c.Epochs, 8)
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("data file is required"))
	}
	if c.EvalFraction <= 0 || c.EvalFraction >= 0.5 {
		errs = append(errs, fmt.Errorf("eval fraction %v: must be in (0, 0.5)", c.EvalFraction))
	}
	if c.SeedFraction <= 0 || c.SeedFraction >= 1 {
		errs = append(errs, fmt.Errorf("seed fraction %v: must be in (0, 1)", c.SeedFraction))
	}
	if c.Batch < 0 || c.Rounds < 0 || c.Seeds < 1 || c.Epochs < 1 {
		errs = append(errs, fmt.Errorf("batch %d, rounds %d, seeds %d, epochs %d: batch and rounds must be ≥ 0, seeds and epochs ≥ 1",
			c.Batch, c.Rounds, c.Seeds, c.Epochs))
	}
	if c.LearningRate <= 0 || c.L2 < 0 {
		errs = append(errs, fmt.Errorf("learning rate %v, l2 %v: need lr > 0, l2 ≥ 0", c.LearningRate, c.L2))
	}
	return errors.Join(errs...)
}

// activeData is the featurised data; rows [0, seed) start labelled, rows
// [seed, seed+pool) are the pool, the rest the evaluation slice.
type activeData struct {
	xs               []featurizer.Vector
	ys               []int
	labels           []string
	numFeatures      int
	seed, pool, eval int
}

// Active simulates pool-based active learning: from the same labelled seed
// set, each strategy adds Batch labels from the pool per round and retrains
// from scratch, and the evaluation slice is scored after every retrain.
func Active(ctx context.Context, cfg ActiveConfig) (ActiveResult, error) {
	start := time.Now()
	if err := cfg.defaults(); err != nil {
		return ActiveResult{}, fmt.Errorf("bench active: %w", err)
	}
	d, err := loadActive(cfg)
	if err != nil {
		return ActiveResult{}, fmt.Errorf("bench active: %w", err)
	}
	if cfg.Batch == 0 {
		cfg.Batch = max(1, (d.seed+d.pool)/20)
	}
	if cfg.Batch*cfg.Rounds > d.pool {
		return ActiveResult{}, fmt.Errorf("bench active: %d rounds of %d labels need %d pool rows, have %d",
			cfg.Rounds, cfg.Batch, cfg.Batch*cfg.Rounds, d.pool)
	}
	res := ActiveResult{Info: ActiveInfo{
		Rows: len(d.xs), Classes: len(d.labels), Features: d.numFeatures,
		Seed: d.seed, Pool: d.pool, Eval: d.eval, Batch: cfg.Batch, Rounds: cfg.Rounds, Seeds: cfg.Seeds,
		Epochs: cfg.Epochs, LR: cfg.LearningRate, L2: cfg.L2, GOMAXPROCS: runtime.GOMAXPROCS(0),
	}}
	if cfg.OnStart != nil {
		cfg.OnStart(res.Info)
	}

	strategies := []string{StrategyMargin, StrategyRandom}
	curves := make([][][]scoring.Report, len(strategies)) // [strategy][seed][round]
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Workers)
	for si, strategy := range strategies {
		curves[si] = make([][]scoring.Report, cfg.Seeds)
		for s := range cfg.Seeds {
			g.Go(func() error {
				c, err := simulate(gctx, d, cfg, strategy, uint64(s+1), nil)
				curves[si][s] = c
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		return ActiveResult{}, fmt.Errorf("bench active: %w", err)
	}

	for r := range cfg.Rounds + 1 {
		row := ActiveRow{Labels: d.seed + r*cfg.Batch}
		for s := range cfg.Seeds {
			m, rd := curves[0][s][r], curves[1][s][r]
			row.MarginAccBySeed = append(row.MarginAccBySeed, m.Accuracy)
			row.RandomAccBySeed = append(row.RandomAccBySeed, rd.Accuracy)
			row.MarginF1 += m.MacroF1 / float64(cfg.Seeds)
			row.RandomF1 += rd.MacroF1 / float64(cfg.Seeds)
		}
		row.MarginAcc, row.RandomAcc = mean(row.MarginAccBySeed), mean(row.RandomAccBySeed)
		row.DeltaAcc, row.DeltaF1 = row.MarginAcc-row.RandomAcc, row.MarginF1-row.RandomF1
		res.Rows = append(res.Rows, row)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// loadActive splits the file by label (evaluation slice, then seed set
// from the rest) and featurises every row once. The vocabulary is fitted on
// the seed set and pool only: their texts are available unlabelled, the
// evaluation slice's are not.
func loadActive(cfg ActiveConfig) (*activeData, error) {
	ds, err := dataset.Load(cfg.Data, dataset.Options{TextColumn: cfg.TextColumn, LabelColumn: cfg.LabelColumn})
	if err != nil {
		return nil, err
	}
	labels := dataset.Labels(ds.Examples)
	if len(labels) < 2 {
		return nil, fmt.Errorf("%s: %d distinct label(s) in column %q; need at least 2", cfg.Data, len(labels), cfg.LabelColumn)
	}
	rest, eval, err := dataset.StratifiedSplit(ds.Examples, cfg.EvalFraction, cfg.SplitSeed)
	if err != nil {
		return nil, fmt.Errorf("evaluation split: %w", err)
	}
	// A different stream from the evaluation split's, so the two are not
	// correlated through the shuffle.
	pool, seed, err := dataset.StratifiedSplit(rest, cfg.SeedFraction, cfg.SplitSeed+1)
	if err != nil {
		return nil, fmt.Errorf("seed split: %w", err)
	}
	all := slices.Concat(seed, pool, eval)
	texts := make([]string, len(seed)+len(pool))
	for i, e := range all[:len(texts)] {
		texts[i] = e.Text
	}
	fcfg := featurizer.DefaultConfig()
	ext, err := featurizer.NewExtractor(fcfg)
	if err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}
	vocab, err := ext.Fit(texts)
	if err != nil {
		return nil, fmt.Errorf("fit vocabulary: %w", err)
	}
	fz, err := featurizer.New(fcfg, vocab)
	if err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}
	index := make(map[string]int, len(labels))
	for i, l := range labels {
		index[l] = i
	}
	ys := make([]int, len(all))
	for i, e := range all {
		ys[i] = index[e.Label]
	}
	return &activeData{
		xs: trainer.Featurize(fz, all, runtime.GOMAXPROCS(0)), ys: ys, labels: labels, numFeatures: vocab.Size(),
		seed: len(seed), pool: len(pool), eval: len(eval),
	}, nil
}

// simulate runs one strategy with one seed and returns the evaluation
// report after each retrain: the seed set's, then one per round. trained,
// if set, is told each training set (row indices) before it is fitted.
func simulate(ctx context.Context, d *activeData, cfg ActiveConfig, strategy string, seed uint64,
	trained func(round int, rows []int)) ([]scoring.Report, error) {
	labelled := make([]int, d.seed)
	for i := range labelled {
		labelled[i] = i
	}
	pool := make([]int, d.pool)
	for i := range pool {
		pool[i] = d.seed + i
	}
	evalRows := d.xs[d.seed+d.pool:]
	rng := rand.New(rand.NewPCG(seed, 0x61637469766501)) // random picks only
	var curve []scoring.Report
	for round := 0; ; round++ {
		if trained != nil {
			trained(round, slices.Clone(labelled))
		}
		m, err := fitLinear(ctx, d, labelled, cfg, seed)
		if err != nil {
			return nil, fmt.Errorf("%s seed %d round %d: %w", strategy, seed, round, err)
		}
		rep, err := scoring.Score(d.labels, d.ys[d.seed+d.pool:], predictAll(m, evalRows))
		if err != nil {
			return nil, err
		}
		curve = append(curve, rep)
		if round == cfg.Rounds {
			return curve, nil
		}
		var picked []int
		switch strategy {
		case StrategyMargin:
			picked = pickMargin(m, d.xs, pool, cfg.Batch)
		case StrategyRandom:
			rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
			picked = slices.Clone(pool[:cfg.Batch])
		default:
			return nil, fmt.Errorf("unknown strategy %q", strategy)
		}
		labelled = append(labelled, picked...)
		taken := make(map[int]bool, len(picked))
		for _, i := range picked {
			taken[i] = true
		}
		pool = slices.DeleteFunc(pool, func(i int) bool { return taken[i] })
	}
}

// pickMargin returns the b pool rows whose top-2 class probabilities are
// closest, the ones the model is least sure how to label; ties go to the
// lower row so a run is reproducible.
func pickMargin(m *trainer.Linear, xs []featurizer.Vector, pool []int, b int) []int {
	type scored struct {
		row    int
		margin float64
	}
	z := make([]float32, m.NumClasses)
	cand := make([]scored, len(pool))
	for k, i := range pool {
		m.Scores(xs[i], z)
		cand[k] = scored{i, topTwoMargin(z)}
	}
	slices.SortFunc(cand, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.margin, b.margin), cmp.Compare(a.row, b.row))
	})
	out := make([]int, min(b, len(cand)))
	for k := range out {
		out[k] = cand[k].row
	}
	return out
}

// topTwoMargin is p(best) − p(second) under the softmax of scores z.
func topTwoMargin(z []float32) float64 {
	i1, i2 := -1, -1
	for c := range z {
		switch {
		case i1 < 0 || z[c] > z[i1]:
			i1, i2 = c, i1
		case i2 < 0 || z[c] > z[i2]:
			i2 = c
		}
	}
	var sum float64
	for _, v := range z {
		sum += math.Exp(float64(v - z[i1])) // stable: the largest term is 1
	}
	return (1 - math.Exp(float64(z[i2]-z[i1]))) / sum
}

// fitLinear trains the trainer's softmax regression on the labelled rows,
// for a fixed number of epochs.
func fitLinear(ctx context.Context, d *activeData, rows []int, cfg ActiveConfig, seed uint64) (*trainer.Linear, error) {
	xs, ys := make([]featurizer.Vector, len(rows)), make([]int, len(rows))
	for k, i := range rows {
		xs[k], ys[k] = d.xs[i], d.ys[i]
	}
	hp := trainer.HyperParams{Loss: "logistic", LearningRate: cfg.LearningRate, L2: cfg.L2, Epochs: cfg.Epochs}
	return trainer.Fit(ctx, xs, ys, d.numFeatures, len(d.labels), hp, cfg.Epochs, seed)
}

func predictAll(m *trainer.Linear, xs []featurizer.Vector) []int {
	z := make([]float32, m.NumClasses)
	pred := make([]int, len(xs))
	for i, x := range xs {
		pred[i] = m.Predict(x, z)
	}
	return pred
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
