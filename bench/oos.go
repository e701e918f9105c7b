package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/trainer"
)

// OOSConfig configures OOS, the leave-intents-out evaluation of abstention:
// some intents are removed from training and their texts stand for
// out-of-scope traffic. Zero values take the defaults noted.
type OOSConfig struct {
	Data        string
	TextColumn  string // default "text"
	LabelColumn string // default "label"
	// Holdout is how many intents are left out; default 10.
	Holdout int
	// Seed picks the intents (PickOOSIntents) and seeds training and the
	// validation split; default 42 when zero.
	Seed uint64
	// Dev evaluates on the development intents instead: a second draw,
	// disjoint from the evaluation intents, for choosing the score form and
	// defaults. Both draws are then left out of training, so a dev run never
	// sees the evaluation intents.
	Dev bool
	// WorkDir receives the in-scope training file and the bundles.
	WorkDir string
	// Encoder, when set, adds a hybrid model (n-grams + embedding) beside
	// the linear one.
	Encoder *trainer.EncoderSource
	// FineTune, when set, adds a fine-tuned transformer.
	FineTune *trainer.FineTune
	// Kinds limits the models trained (bundle.KindLinear, bundle.KindHybrid,
	// KindFineTuned); default every kind the config allows.
	Kinds []string
	Model inference.ModelOptions
	// AbstainPrecision is the training option (0: trainer default).
	AbstainPrecision float64
	// Accuracy and Recall are where the curve is read: the best OOS recall
	// with in-scope accuracy (abstentions counted as errors) >= Accuracy,
	// and the most in-scope coverage with OOS recall >= Recall (where both
	// accuracies are then shown); defaults 0.93 and 0.6.
	Accuracy, Recall float64
	Logger           *slog.Logger
	// OnModel, if set, is called as each model's result is ready.
	OnModel func(OOSModel)
}

// KindFineTuned names the fine-tuned transformer among bench oos's models
// (its bundle's graph kind is "encoder").
const KindFineTuned = "fine-tuned"

// OOSResult is a leave-intents-out run.
type OOSResult struct {
	Held       []string   `json:"held_out_intents"` // out of scope in this run
	Evaluation []string   `json:"evaluation_intents"`
	Dev        []string   `json:"dev_intents"`
	Mode       string     `json:"mode"` // "evaluation" or "dev"
	Classes    int        `json:"in_scope_intents"`
	TrainRows  int        `json:"in_scope_rows"`
	Models     []OOSModel `json:"models"`
}

// OOSModel is one model kind's abstention figures: in-scope texts are the
// validation split the trainer carved (and chose the threshold on),
// out-of-scope texts every row of the held-out intents.
type OOSModel struct {
	Kind        string             `json:"kind"`
	Dir         string             `json:"bundle"`
	ValAccuracy float64            `json:"validation_accuracy"`
	Abstain     *bundle.Abstain    `json:"abstain"`
	InScope     int                `json:"in_scope"`
	OutOfScope  int                `json:"out_of_scope"`
	AUROC       float64            `json:"auroc"` // in-scope vs out-of-scope by abstention score
	AtThreshold scoring.OOSPoint   `json:"at_threshold"`
	Curve       []scoring.OOSPoint `json:"curve"`
	// BestRecall is the best OOS recall with in-scope accuracy (abstentions
	// as errors) >= Accuracy; AtRecall the most coverage with OOS recall >=
	// Recall. Both are read off the curve (thresholds chosen on this set).
	BestRecall *scoring.OOSPoint `json:"best_recall_at_accuracy,omitempty"`
	AtRecall   *scoring.OOSPoint `json:"most_coverage_at_recall,omitempty"`
	Seconds    float64           `json:"seconds"`
}

// PickOOSIntents draws n evaluation intents and n development intents,
// disjoint, from the sorted labels with a fixed seed; each list is sorted.
func PickOOSIntents(labels []string, n int, seed uint64) (eval, dev []string, err error) {
	if n < 1 || 2*n >= len(labels) {
		return nil, nil, fmt.Errorf("leave %d intents out twice (evaluation and dev) from %d: need more than %d intents", n, len(labels), 2*n)
	}
	sorted := slices.Sorted(slices.Values(labels))
	perm := rand.New(rand.NewPCG(seed, 0x6f6f73)).Perm(len(sorted))
	for _, i := range perm[:n] {
		eval = append(eval, sorted[i])
	}
	for _, i := range perm[n : 2*n] {
		dev = append(dev, sorted[i])
	}
	slices.Sort(eval)
	slices.Sort(dev)
	return eval, dev, nil
}

// OOS trains a linear model (and a hybrid one with an encoder) without the
// held-out intents and measures how their abstention rules separate the
// in-scope validation texts from the held-out intents' texts.
func OOS(ctx context.Context, cfg OOSConfig) (*OOSResult, error) {
	cfg.TextColumn = cmp.Or(cfg.TextColumn, "text")
	cfg.LabelColumn = cmp.Or(cfg.LabelColumn, "label")
	cfg.Holdout = cmp.Or(cfg.Holdout, 10)
	cfg.Seed = cmp.Or(cfg.Seed, 42)
	cfg.Accuracy = cmp.Or(cfg.Accuracy, 0.93)
	cfg.Recall = cmp.Or(cfg.Recall, 0.6)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Data == "" || cfg.WorkDir == "" {
		return nil, errors.New("bench oos: data file and work directory are required")
	}
	ds, err := dataset.Load(cfg.Data, dataset.Options{TextColumn: cfg.TextColumn, LabelColumn: cfg.LabelColumn})
	if err != nil {
		return nil, fmt.Errorf("bench oos: %w", err)
	}
	res := &OOSResult{Mode: "evaluation"}
	if res.Evaluation, res.Dev, err = PickOOSIntents(dataset.Labels(ds.Examples), cfg.Holdout, cfg.Seed); err != nil {
		return nil, fmt.Errorf("bench oos: %w", err)
	}
	held, excluded := res.Evaluation, res.Evaluation
	if cfg.Dev {
		res.Mode, held, excluded = "dev", res.Dev, slices.Concat(res.Evaluation, res.Dev)
	}
	res.Held = held
	var in, oos []dataset.Example
	for _, e := range ds.Examples {
		switch {
		case slices.Contains(held, e.Label):
			oos = append(oos, e)
		case !slices.Contains(excluded, e.Label):
			in = append(in, e)
		}
	}
	res.Classes, res.TrainRows = len(dataset.Labels(in)), len(in)
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench oos: %w", err)
	}
	path := filepath.Join(cfg.WorkDir, "in-scope.csv")
	if err := dataset.WriteCSV(path, in); err != nil {
		return nil, fmt.Errorf("bench oos: %w", err)
	}
	// The in-scope evaluation rows are the trainer's own validation split
	// of that file, carved as `triage eval --split validation` does.
	inDS, err := dataset.Load(path, dataset.Options{TextColumn: "text", LabelColumn: "label"})
	if err != nil {
		return nil, fmt.Errorf("bench oos: %w", err)
	}
	_, val, err := dataset.StratifiedSplit(inDS.Examples, 0.1, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("bench oos: %w", err)
	}
	kinds := []string{bundle.KindLinear}
	if cfg.Encoder != nil {
		kinds = append(kinds, bundle.KindHybrid)
	}
	if cfg.FineTune != nil {
		kinds = append(kinds, KindFineTuned)
	}
	if len(cfg.Kinds) > 0 {
		for _, k := range cfg.Kinds {
			if !slices.Contains(kinds, k) {
				return nil, fmt.Errorf("bench oos: model kind %q needs its setup (hybrid: --encoder; fine-tuned: --fine-tune) or is unknown; available: %s", k, strings.Join(kinds, ", "))
			}
		}
		kinds = cfg.Kinds
	}
	for _, kind := range kinds {
		start := time.Now()
		dir := filepath.Join(cfg.WorkDir, kind)
		opts := trainer.Options{DataPath: path, TextColumn: "text", LabelColumn: "label", OutDir: dir, Name: "oos-" + kind,
			Seed: cfg.Seed, ValFraction: 0.1, AbstainPrecision: cfg.AbstainPrecision, Logger: cfg.Logger}
		switch kind {
		case bundle.KindHybrid:
			opts.Encoder = cfg.Encoder
		case KindFineTuned:
			opts.FineTune = cfg.FineTune
		}
		if _, err := trainer.Train(ctx, opts); err != nil {
			return nil, fmt.Errorf("bench oos: train %s: %w", kind, err)
		}
		r, err := scoreOOS(ctx, dir, cfg.Model, val, oos, cfg.Accuracy, cfg.Recall)
		if err != nil {
			return nil, fmt.Errorf("bench oos: %s: %w", kind, err)
		}
		r.Kind, r.Seconds = kind, time.Since(start).Seconds()
		res.Models = append(res.Models, *r)
		if cfg.OnModel != nil {
			cfg.OnModel(*r)
		}
	}
	return res, nil
}

// scoreOOS serves the bundle in dir through ONNX Runtime on the in-scope
// and out-of-scope texts.
func scoreOOS(ctx context.Context, dir string, mo inference.ModelOptions, val, oos []dataset.Example, accuracy, recall float64) (*OOSModel, error) {
	m, err := inference.Open(dir, mo)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	man := m.Manifest()
	texts := make([]string, 0, len(val)+len(oos))
	for _, e := range slices.Concat(val, oos) {
		texts = append(texts, e.Text)
	}
	var preds []inference.Prediction
	for lo := 0; lo < len(texts); lo += 256 {
		ps, err := m.Predict(ctx, texts[lo:min(lo+256, len(texts))])
		if err != nil {
			return nil, err
		}
		preds = append(preds, ps...)
	}
	set := scoring.OOSSet{}
	var at scoring.OOSPoint
	var accepted, right, rejected int
	for i, p := range preds {
		s := float64(p.Signals.AbstainScore)
		if i < len(val) {
			ok := p.Label == val[i].Label
			set.InScores, set.InCorrect = append(set.InScores, s), append(set.InCorrect, ok)
			if !p.Abstained {
				accepted++
				if ok {
					right++
				}
			}
			continue
		}
		set.OOSScores = append(set.OOSScores, s)
		if p.Abstained {
			rejected++
		}
	}
	// The operating point counts the served predictions' own abstained
	// flags, so it measures the serving path, not a re-derivation of it.
	at.Threshold = set.Lowest()
	if man.Abstain != nil {
		at.Threshold = man.Abstain.Threshold
	}
	at.Accuracy = float64(right) / float64(len(val))
	at.Coverage = float64(accepted) / float64(len(val))
	at.SelectiveAccuracy = 1
	if accepted > 0 {
		at.SelectiveAccuracy = float64(right) / float64(accepted)
	}
	at.OOSRecall = float64(rejected) / float64(len(oos))
	r := &OOSModel{Dir: dir, ValAccuracy: man.Metrics.Validation.Accuracy, Abstain: man.Abstain, InScope: len(val), OutOfScope: len(oos),
		AUROC: auroc(set.InScores, set.OOSScores), AtThreshold: at, Curve: set.Curve(scoring.DefaultCoverages)}
	if r.Abstain != nil {
		a := *r.Abstain
		a.ClassCentroids = nil // 77 x 384 numbers: not a report's business
		r.Abstain = &a
	}
	if p, ok := set.Best(func(p scoring.OOSPoint) bool { return p.Accuracy >= accuracy }, nil); ok {
		r.BestRecall = &p
	}
	if p, ok := set.Best(func(p scoring.OOSPoint) bool { return p.OOSRecall >= recall },
		func(a, b scoring.OOSPoint) bool { return a.Coverage > b.Coverage }); ok {
		r.AtRecall = &p
	}
	return r, nil
}

// auroc is the probability that an in-scope text scores above an
// out-of-scope one (ties count half): drift's rank-based ROC AUC with
// in-scope as the positive class.
func auroc(in, out []float64) float64 {
	if len(in) == 0 || len(out) == 0 {
		return 0
	}
	pos := make([]bool, len(in)+len(out))
	for i := range in {
		pos[i] = true
	}
	return drift.ROCAUC(append(slices.Clone(in), out...), pos)
}
