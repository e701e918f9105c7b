package tracking

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/registry"
)

// Recorder records each trained and registered bundle as an experiment run
// (experiment = model name): a parent run with the chosen parameters, the
// validation metrics and the bundle as an artifact, one child run per
// hyper-parameter trial of the search, and — with a Mirror — the version in
// the tracking server's model registry. Tracking never fails training: every
// error is logged and dropped, and a server that is down costs one bounded
// retry budget (see MLflowOptions).
type Recorder struct {
	Tracker Tracker
	Mirror  Mirror // nil: no model registry mirror
	Logger  *slog.Logger
	// Timeout bounds one recording; default 2 minutes (artifact upload).
	Timeout time.Duration
}

// Record logs the bundle in dir, registered as version of model; tags say
// what started it (trigger, job id, snapshot...). It returns the parent
// run's id ("" when tracking failed).
func (r *Recorder) Record(ctx context.Context, model, version, dir string, tags map[string]string) string {
	if r == nil || r.Tracker == nil {
		return ""
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	id, err := r.record(ctx, model, version, dir, tags)
	if err != nil {
		log.Warn("experiment tracking failed; training is unaffected", "model", model, "version", version, "err", err)
	}
	return id
}

func (r *Recorder) record(ctx context.Context, model, version, dir string, tags map[string]string) (string, error) {
	b, err := bundle.Load(dir)
	if err != nil {
		return "", err
	}
	m := b.Manifest
	all := map[string]string{"triage.version": version, "triage.kind": m.Graph.Kind, "data_sha256": m.Training.DataSHA256,
		"code_version": m.Training.GoVersion}
	maps.Copy(all, tags)
	parent, err := r.Tracker.StartRun(ctx, RunSpec{Experiment: model, Name: version, Tags: all})
	if err != nil {
		return "", fmt.Errorf("start run: %w", err)
	}
	status := StatusFailed
	defer func() { parent.End(context.WithoutCancel(ctx), status) }()
	params := map[string]string{"rows": strconv.Itoa(m.Training.Rows), "seed": strconv.FormatUint(m.Training.Seed, 10),
		"text_column": m.Training.TextColumn, "label_column": m.Training.LabelColumn, "labels": strconv.Itoa(len(m.Labels))}
	for k, v := range m.HyperParams {
		params[k] = fmt.Sprint(v)
	}
	if err := parent.LogParams(ctx, params); err != nil {
		return parent.ID(), fmt.Errorf("log params: %w", err)
	}
	for k, v := range map[string]float64{"val_accuracy": m.Metrics.Validation.Accuracy, "val_macro_f1": m.Metrics.Validation.MacroF1,
		"train_accuracy": m.Metrics.TrainAcc} {
		if err := parent.LogMetric(ctx, k, v, 0); err != nil {
			return parent.ID(), fmt.Errorf("log metric %s: %w", k, err)
		}
	}
	for i, trial := range m.Metrics.Search {
		if err := r.trial(ctx, model, parent.ID(), i, trial); err != nil {
			return parent.ID(), err
		}
	}
	if err := parent.LogArtifacts(ctx, dir, "bundle"); err != nil {
		return parent.ID(), fmt.Errorf("log the bundle: %w", err)
	}
	status = StatusFinished
	if r.Mirror != nil {
		if err := r.Mirror.RegisterVersion(ctx, model, version, parent.ID(), "bundle"); err != nil {
			return parent.ID(), fmt.Errorf("mirror %s %s: %w", model, version, err)
		}
	}
	return parent.ID(), nil
}

// trial logs one hyper-parameter setting of the search as a child run: the
// validation score after every epoch it trained (val_accuracy and
// val_macro_f1, step = epoch) and the epoch the search kept with its score
// (best_*). Trials recorded without a curve log their kept score only.
func (r *Recorder) trial(ctx context.Context, model, parentID string, i int, t bundle.Trial) error {
	keys := slices.Sorted(maps.Keys(t.Params))
	name := fmt.Sprintf("trial %d", i+1)
	params := map[string]string{}
	for _, k := range keys {
		params[k] = fmt.Sprint(t.Params[k])
		name += " " + k + "=" + params[k]
	}
	run, err := r.Tracker.StartRun(ctx, RunSpec{Experiment: model, Name: name, ParentID: parentID})
	if err != nil {
		return fmt.Errorf("start trial run: %w", err)
	}
	status := StatusFailed
	defer func() { run.End(context.WithoutCancel(ctx), status) }()
	if err := run.LogParams(ctx, params); err != nil {
		return fmt.Errorf("log trial params: %w", err)
	}
	curve := t.Curve
	if len(curve) == 0 {
		curve = []bundle.EpochScore{{Epoch: t.BestEpoch, ValAccuracy: t.ValAccuracy, ValMacroF1: t.ValMacroF1}}
	}
	best := int64(t.BestEpoch)
	type point struct {
		key   string
		value float64
		step  int64
	}
	points := []point{{"best_epoch", float64(t.BestEpoch), best}, {"best_val_accuracy", t.ValAccuracy, best}, {"best_val_macro_f1", t.ValMacroF1, best}}
	for _, e := range curve {
		points = append(points, point{"val_accuracy", e.ValAccuracy, int64(e.Epoch)}, point{"val_macro_f1", e.ValMacroF1, int64(e.Epoch)})
		if e.TrainLoss != nil {
			points = append(points, point{"train_loss", *e.TrainLoss, int64(e.Epoch)})
		}
		if e.ValLoss != nil {
			points = append(points, point{"val_loss", *e.ValLoss, int64(e.Epoch)})
		}
	}
	for _, p := range points {
		if err := run.LogMetric(ctx, p.key, p.value, p.step); err != nil {
			return fmt.Errorf("log trial metric: %w", err)
		}
	}
	status = StatusFinished
	return nil
}

// MirrorMoves returns a function that repeats registry alias moves in m,
// logging (never returning) failures: for serving.Admin.
func MirrorMoves(m Mirror, log *slog.Logger) func(ctx context.Context, mv registry.Move) {
	if m == nil {
		return nil
	}
	return func(ctx context.Context, mv registry.Move) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := MirrorMove(ctx, m, mv); err != nil && log != nil {
			log.Warn("mirror alias move to the tracking server", "model", mv.Model, "alias", mv.Alias, "to", mv.To, "err", err)
		}
	}
}
