// Package retrain closes the learning loop for one model at a time:
// snapshot (base data + human labels) → train → evaluate challenger and
// champion on the model's fixed evaluation set → gate → register → promote
// or reject. Runs are started on demand, by a cron schedule, or when enough
// new labels have arrived; one run per model at a time, and a crashed run
// leaves nothing half-registered (the registry's register is atomic, and a
// version is only promoted after it is registered and has passed the gate).
package retrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/triage-ml/triage/internal/filelock"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/snapshot"
	"github.com/triage-ml/triage/trainer"
)

// Triggers of a run, recorded on the version.
const (
	TriggerManual    = "manual"
	TriggerSchedule  = "schedule"
	TriggerThreshold = "threshold"
)

// ErrRunning is returned when the model already has a run in progress.
var ErrRunning = errors.New("a retraining run is already in progress for this model")

// Base is a model's base training data, before human labels.
type Base struct {
	Path, TextColumn, LabelColumn string
}

// Model is what evaluation needs of a loaded bundle; *inference.Model is one.
type Model interface {
	Predict(ctx context.Context, texts []string) ([]inference.Prediction, error)
	Close() error
}

// Config configures a Runner.
type Config struct {
	Registry registry.Store
	// Promote makes a version the champion and announces it (serving.Admin).
	Promote func(ctx context.Context, name, version, who, why string) error
	// Snapshots keeps every run's training data.
	Snapshots *snapshot.Store
	// Feedback, when set, is where human labels are read from; nil trains
	// on the base data alone.
	Feedback *snapshot.FeedbackSource
	// DeadLetterTopic, when set with Feedback, receives the feedback
	// records a run refused (invalid, empty, oversized, unknown model), once:
	// those read since the model's previous snapshot.
	DeadLetterTopic string
	Bases           map[string]Base
	// WorkDir holds bundles while they train, the per-model run locks and
	// the frozen evaluation sets (WORK/evalsets/MODEL.csv).
	WorkDir string
	Gate    Gate
	// EvalFraction of the first snapshot is frozen as the evaluation set
	// (default 0.1), stratified with Seed (default 42).
	EvalFraction float64
	Seed         uint64
	// Open loads a bundle for evaluation.
	Open func(dir string) (Model, error)
	// Train trains a bundle; default trainer.Train. Options carries the
	// settings every run uses (MaxEpochs, Encoder, ...); the runner sets the
	// data, output, name and seed.
	Train   func(ctx context.Context, opts trainer.Options) (*trainer.Result, error)
	Options trainer.Options
	// Record, when set, is called with each registered challenger while its
	// bundle still exists (experiment tracking); it must not fail the run.
	Record func(ctx context.Context, model, version, dir string, tags map[string]string)
	Logger *slog.Logger
}

// Runner runs retraining, one run per model at a time.
type Runner struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup // background runs started by Run
}

// New validates cfg.
func New(cfg Config) (*Runner, error) {
	var errs []error
	if cfg.Registry == nil || cfg.Snapshots == nil || cfg.Open == nil {
		errs = append(errs, errors.New("retrain: a registry, a snapshot store and an Open function are required"))
	}
	if cfg.WorkDir == "" {
		errs = append(errs, errors.New("retrain: a work folder is required (--work-dir)"))
	}
	if cfg.Gate == (Gate{}) {
		cfg.Gate = DefaultGate()
	}
	if err := cfg.Gate.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.EvalFraction == 0 {
		cfg.EvalFraction = 0.1
	}
	if cfg.EvalFraction <= 0 || cfg.EvalFraction >= 0.5 {
		errs = append(errs, fmt.Errorf("retrain: evaluation fraction %v must be in (0, 0.5)", cfg.EvalFraction))
	}
	if cfg.Seed == 0 {
		cfg.Seed = 42
	}
	if cfg.Train == nil {
		cfg.Train = trainer.Train
	}
	if cfg.Promote == nil && cfg.Registry != nil {
		cfg.Promote = func(ctx context.Context, name, version, who, why string) error {
			_, err := cfg.Registry.Promote(ctx, name, version, who, why)
			return err
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: cfg.Logger.With("component", "retrain"), running: map[string]bool{}}, nil
}

// Result is what one run did.
type Result struct {
	Model    string        `json:"model"`
	Trigger  string        `json:"trigger"`
	Snapshot string        `json:"snapshot"`
	Version  string        `json:"version"`
	Promoted bool          `json:"promoted"`
	Gate     registry.Gate `json:"gate"`
	Seconds  float64       `json:"seconds"`
}

// Retrain runs the whole loop for model once. It returns ErrRunning at once
// when the model already has a run (in this process or another sharing the
// work folder).
func (r *Runner) Retrain(ctx context.Context, model, trigger, who string) (Result, error) {
	unlock, err := r.lock(model)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	start := time.Now()
	res, err := r.run(ctx, model, trigger, who)
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		return res, fmt.Errorf("retrain %s: %w", model, err)
	}
	return res, nil
}

// lock takes the model's run, in this process and across processes.
func (r *Runner) lock(model string) (func(), error) {
	r.mu.Lock()
	if r.running[model] {
		r.mu.Unlock()
		return nil, fmt.Errorf("retrain %s: %w", model, ErrRunning)
	}
	r.running[model] = true
	r.mu.Unlock()
	release := func() {
		r.mu.Lock()
		delete(r.running, model)
		r.mu.Unlock()
	}
	if err := os.MkdirAll(r.cfg.WorkDir, 0o755); err != nil {
		release()
		return nil, fmt.Errorf("retrain %s: %w", model, err)
	}
	unlock, err := filelock.TryLock(filepath.Join(r.cfg.WorkDir, model+".retrain.lock"))
	if errors.Is(err, filelock.ErrLocked) {
		err = ErrRunning
	}
	if err != nil {
		release()
		return nil, fmt.Errorf("retrain %s: %w", model, err)
	}
	return func() {
		unlock()
		release()
	}, nil
}

func (r *Runner) run(ctx context.Context, model, trigger, who string) (Result, error) {
	res := Result{Model: model, Trigger: trigger}
	base, ok := r.cfg.Bases[model]
	if !ok {
		return res, fmt.Errorf("no base training data is configured for model %q", model)
	}
	log := r.log.With("model", model, "trigger", trigger)

	// 1. Snapshot: the base data and every human label so far.
	snap, err := r.snapshot(ctx, model, base)
	if err != nil {
		return res, err
	}
	res.Snapshot = snap.Manifest.ID
	log.Info("retrain: snapshot", "snapshot", snap.Manifest.ID, "rows", snap.Manifest.Rows)

	// 2. The fixed evaluation set; training is what is left.
	_, hasChampion := r.cfg.Registry.Resolve(ctx, model, registry.Champion)
	eval, evalSHA, err := r.evalSet(model, snap, hasChampion == nil)
	if err != nil {
		return res, err
	}
	train := withoutTexts(snap.Rows, eval)

	// 3. Train the challenger.
	runDir, err := os.MkdirTemp(r.cfg.WorkDir, model+"-retrain-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(runDir) // the registry keeps its own copy
	data := filepath.Join(runDir, "train.csv")
	if err := dataset.WriteCSV(data, train); err != nil {
		return res, err
	}
	opts := r.cfg.Options
	if opts.AbstainPrecision == 0 {
		opts.AbstainPrecision = inheritedAbstain(ctx, r.cfg.Registry, model)
	}
	opts.DataPath, opts.TextColumn, opts.LabelColumn = data, "text", "label"
	opts.OutDir, opts.Name, opts.Seed = filepath.Join(runDir, "bundle"), model, r.cfg.Seed
	if opts.Logger == nil {
		opts.Logger = r.cfg.Logger
	}
	trained, err := r.cfg.Train(ctx, opts)
	if err != nil {
		return res, fmt.Errorf("train: %w", err)
	}

	// 4. Evaluate both on the same rows, 5. gate.
	challenger, err := r.evaluate(ctx, trained.Dir, eval)
	if err != nil {
		return res, fmt.Errorf("evaluate the challenger: %w", err)
	}
	var champion *scoring.Report
	championVersion := ""
	if cur, err := r.cfg.Registry.Resolve(ctx, model, registry.Champion); err == nil {
		rep, err := r.evaluate(ctx, cur.Dir, eval)
		if err != nil {
			return res, fmt.Errorf("evaluate the champion %s: %w", cur.Version, err)
		}
		champion, championVersion = &rep, cur.Version
	} else if !errors.Is(err, registry.ErrNotFound) {
		return res, err
	}
	gate := r.cfg.Gate.Decide(champion, challenger)
	gate.Champion, gate.EvalSet = championVersion, evalSHA
	res.Gate = gate

	// 6. Register (whatever the decision: the record says why), 7. promote.
	m := trained.Manifest
	lin := trainer.LineageOf(m)
	lin.DataPath, lin.DataSHA256 = filepath.Join(snap.Dir, "rows.csv"), snap.Manifest.SHA256
	lin.Snapshot, lin.Parent, lin.Trigger, lin.Gate = snap.Manifest.ID, championVersion, trigger, &gate
	lin.Metrics["eval_macro_f1"], lin.Metrics["eval_accuracy"] = challenger.MacroF1, challenger.Accuracy
	v, err := r.cfg.Registry.Register(ctx, model, trained.Dir, lin, who)
	if err != nil {
		return res, fmt.Errorf("register: %w", err)
	}
	res.Version = v.Version
	if r.cfg.Record != nil {
		r.cfg.Record(ctx, model, v.Version, trained.Dir, map[string]string{"trigger": trigger, "snapshot": snap.Manifest.ID,
			"gate": strconv.FormatBool(gate.Passed), "champion": championVersion})
	}
	if !gate.Passed {
		log.Warn("retrain: challenger rejected by the gate", "version", v.Version, "champion", championVersion,
			"challenger_macro_f1", gate.ChallengerMacroF1, "champion_macro_f1", gate.ChampionMacroF1, "reasons", gate.Reasons)
		return res, nil
	}
	why := fmt.Sprintf("retrain (%s): eval macro-F1 %.4f vs champion %.4f on %d rows", trigger, gate.ChallengerMacroF1, gate.ChampionMacroF1, gate.EvalRows)
	if err := r.cfg.Promote(ctx, model, v.Version, who, why); err != nil {
		return res, fmt.Errorf("promote %s (registered, not promoted): %w", v.Version, err)
	}
	res.Promoted = true
	log.Info("retrain: challenger promoted", "version", v.Version, "from", championVersion, "macro_f1", gate.ChallengerMacroF1)
	return res, nil
}

// snapshot writes the model's current data as a snapshot.
func (r *Runner) snapshot(ctx context.Context, model string, base Base) (snapshot.Snapshot, error) {
	ds, err := dataset.Load(base.Path, dataset.Options{TextColumn: base.TextColumn, LabelColumn: base.LabelColumn})
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("base data: %w", err)
	}
	src := snapshot.Source{Base: &snapshot.BaseSource{Path: base.Path, SHA256: ds.SHA256}}
	var labels []snapshot.Label
	if r.cfg.Feedback != nil {
		fb, err := snapshot.ReadFeedback(ctx, *r.cfg.Feedback)
		if err != nil {
			return snapshot.Snapshot{}, fmt.Errorf("read feedback: %w", err)
		}
		labels = fb.For(model)
		src.Feedback = &snapshot.FeedbackOffsets{Topic: fb.Topic, Offsets: fb.Offsets}
		r.deadLetter(ctx, model, fb)
	}
	m, err := r.cfg.Snapshots.Write(model, snapshot.Build(ds.Examples, labels), src)
	if err != nil {
		return snapshot.Snapshot{}, err
	}
	return r.cfg.Snapshots.Get(model, m.ID)
}

// evalSet returns the model's fixed evaluation rows: carved from snap
// (stratified, seeded) on the model's first run, then grown only with
// labels marked for evaluation (feedback with "eval": true), so every later
// champion and challenger are compared on the same rows plus those. When a
// champion already serves at the first run, only rows from feedback are
// candidates: the champion was trained on the base data, and base rows
// would flatter it. Rows marked for evaluation always join it whole.
func (r *Runner) evalSet(model string, snap snapshot.Snapshot, hasChampion bool) ([]dataset.Example, string, error) {
	path := filepath.Join(r.cfg.WorkDir, "evalsets", model+".csv")
	var eval []dataset.Example
	frozen := ""
	if _, err := os.Stat(path); err == nil {
		ds, err := dataset.Load(path, dataset.Options{TextColumn: "text", LabelColumn: "label"})
		if err != nil {
			return nil, "", fmt.Errorf("evaluation set: %w", err)
		}
		eval, frozen = ds.Examples, ds.SHA256
	} else {
		var exs []dataset.Example
		for _, row := range snap.Rows {
			if !hasChampion || row.Origin == snapshot.OriginFeedback {
				exs = append(exs, dataset.Example{Text: row.Text, Label: row.Label})
			}
		}
		if len(exs) > 0 {
			if _, eval, err = dataset.StratifiedSplit(exs, r.cfg.EvalFraction, r.cfg.Seed+1); err != nil {
				return nil, "", fmt.Errorf("evaluation set: %w", err)
			}
		}
	}
	held := make(map[string]bool, len(eval))
	for _, e := range eval {
		held[snapshot.TextKey(e.Text)] = true
	}
	added := 0
	for _, row := range snap.Rows {
		if row.Origin == snapshot.OriginEval && !held[snapshot.TextKey(row.Text)] {
			held[snapshot.TextKey(row.Text)] = true
			eval = append(eval, dataset.Example{Text: row.Text, Label: row.Label})
			added++
		}
	}
	if len(eval) == 0 {
		return nil, "", errors.New("no labels the champion has not trained on yet: send feedback before the first retraining")
	}
	if frozen != "" && added == 0 {
		return eval, frozen, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, "", err
	}
	tmp := path + ".tmp"
	if err := dataset.WriteCSV(tmp, eval); err != nil {
		return nil, "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, "", err
	}
	r.log.Info("retrain: evaluation set written", "model", model, "rows", len(eval), "marked_for_evaluation_added", added,
		"snapshot", snap.Manifest.ID, "path", path)
	sum, err := fileSHA256(path)
	return eval, sum, err
}

// fileSHA256 is the hex SHA-256 of a file, as dataset.Load reports it.
func fileSHA256(path string) (string, error) {
	ds, err := dataset.Load(path, dataset.Options{TextColumn: "text", LabelColumn: "label"})
	if err != nil {
		return "", fmt.Errorf("evaluation set: %w", err)
	}
	return ds.SHA256, nil
}

// withoutTexts is rows minus the evaluation texts (by normalised text), as
// training examples.
func withoutTexts(rows snapshot.Rows, eval []dataset.Example) []dataset.Example {
	held := make(map[string]bool, len(eval))
	for _, e := range eval {
		held[snapshot.TextKey(e.Text)] = true
	}
	var out []dataset.Example
	for _, row := range rows {
		if !held[snapshot.TextKey(row.Text)] {
			out = append(out, dataset.Example{Text: row.Text, Label: row.Label})
		}
	}
	return out
}

// evaluate scores the bundle in dir on the evaluation rows.
func (r *Runner) evaluate(ctx context.Context, dir string, eval []dataset.Example) (scoring.Report, error) {
	m, err := r.cfg.Open(dir)
	if err != nil {
		return scoring.Report{}, err
	}
	defer m.Close()
	texts := make([]string, len(eval))
	for i, e := range eval {
		texts[i] = e.Text
	}
	var preds []inference.Prediction
	for lo := 0; lo < len(texts); lo += 256 {
		p, err := m.Predict(ctx, texts[lo:min(lo+256, len(texts))])
		if err != nil {
			return scoring.Report{}, err
		}
		preds = append(preds, p...)
	}
	labels := map[string]int{}
	var names []string
	index := func(l string) int {
		if i, ok := labels[l]; ok {
			return i
		}
		labels[l] = len(names)
		names = append(names, l)
		return labels[l]
	}
	gold, pred := make([]int, len(eval)), make([]int, len(eval))
	for i, e := range eval {
		gold[i], pred[i] = index(e.Label), index(preds[i].Label)
	}
	return scoring.Score(names, gold, pred)
}

// deadLetter publishes the feedback records refused since the model's
// previous snapshot: never trained on, never silently dropped. A failure is
// logged; the run goes on (the next run publishes them again).
func (r *Runner) deadLetter(ctx context.Context, model string, fb snapshot.Feedback) {
	if r.cfg.DeadLetterTopic == "" {
		return
	}
	since := map[int32]int64{}
	if prev, err := r.cfg.Snapshots.Latest(model); err == nil && prev.Manifest.Feedback != nil {
		since = prev.Manifest.Feedback.Offsets
	}
	rejects := fb.RejectsSince(since)
	if len(rejects) == 0 {
		return
	}
	n, err := snapshot.PublishRejects(ctx, r.cfg.Feedback.Brokers, r.cfg.DeadLetterTopic, rejects, r.cfg.Feedback.ClientOpts...)
	if err != nil {
		r.log.Warn("retrain: dead-letter refused feedback", "model", model, "rejects", len(rejects), "err", err)
		return
	}
	r.log.Info("retrain: refused feedback dead-lettered", "model", model, "records", n, "topic", r.cfg.DeadLetterTopic)
}

// inheritedAbstain is the champion's abstention target, so a retrained
// model keeps its setting: one trained without a rule (a sentiment model,
// where nothing is out of scope, or a bundle from before the rule) does not
// start to abstain. 0 (the trainer's default) without a readable champion.
func inheritedAbstain(ctx context.Context, reg registry.Store, model string) float64 {
	cur, err := reg.Resolve(ctx, model, registry.Champion)
	if err != nil {
		return 0
	}
	b, err := bundle.Load(cur.Dir)
	if err != nil {
		return 0
	}
	if b.Manifest.Abstain == nil {
		return -1
	}
	return b.Manifest.Abstain.TargetPrecision
}
