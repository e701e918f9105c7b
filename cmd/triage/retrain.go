package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/retrain"
	"github.com/triage-ml/triage/serving"
	"github.com/triage-ml/triage/snapshot"
	"github.com/triage-ml/triage/tracking"
	"github.com/triage-ml/triage/trainer"
)

// retrainFlags are the learning loop's settings, shared by the trainer role
// and `triage retrain`.
type retrainFlags struct {
	snapshots, schedules string
	threshold            int
	maxEpochs            int
	tuneBudget           time.Duration
	checkEvery           time.Duration
	gate                 retrain.Gate
	fineTune             bool
	ft                   fineTuneFlags // how fine-tuning runs: retraining with --retrain-fine-tune, and jobs asking for it
}

func (f *retrainFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.snapshots, "snapshots", "data/snapshots", "labelled data snapshots folder (immutable, one per retraining run)")
	fs.StringVar(&f.schedules, "retrain-schedule", "", `trainer: cron schedules, model=spec,... ("support=@weekly", "reviews=0 3 * * 1"; a leading seconds field is allowed)`)
	fs.IntVar(&f.threshold, "retrain-threshold", 0, "trainer: retrain a default model once this many new labels arrived since its latest snapshot (0 = never)")
	fs.DurationVar(&f.checkEvery, "retrain-check-interval", 30*time.Second, "trainer: how often new labels are counted against --retrain-threshold")
	fs.IntVar(&f.maxEpochs, "retrain-max-epochs", 0, "epoch cap of retraining runs (0 = the trainer's default)")
	fs.DurationVar(&f.tuneBudget, "retrain-tune-budget", 0, "each retraining run tunes hyper-parameters for this long (triage tune: random search with successive halving, refit) instead of training the default grid (0 = the grid)")
	fs.BoolVar(&f.fineTune, "retrain-fine-tune", false, "retraining runs fine-tune the BERT checkpoint (--checkpoint, or the one --encoder was converted from) instead of training a head; the fine-tuning flags say how")
	f.ft.register(fs, false)
	f.gate.RegisterFlags(fs)
}

// fineTuning resolves the fine-tuning setup (nil and the reason when the
// flags or the machine do not allow it); --retrain-fine-tune makes that
// reason an error at start.
func (f *retrainFlags) fineTuning(encoderDir, variant string, rt *runtimeFlags) (*trainer.FineTune, error) {
	ft, err := f.ft.build(encoderDir, variant, rt.encoderOpener())
	if err != nil && f.fineTune {
		return nil, fmt.Errorf("--retrain-fine-tune: %w", err)
	}
	if err == nil && f.fineTune && f.tuneBudget > 0 {
		return nil, errors.New("--retrain-fine-tune and --retrain-tune-budget: choose one (fine-tuning does its own early stopping)")
	}
	return ft, err
}

// policies are the schedules and the threshold, per default model.
func (f *retrainFlags) policies() ([]retrain.Policy, error) {
	byModel := map[string]*retrain.Policy{}
	var out []retrain.Policy
	for _, dm := range trainer.DefaultModels {
		byModel[dm.Name] = &retrain.Policy{Model: dm.Name, Threshold: f.threshold}
	}
	for _, part := range strings.Split(f.schedules, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		model, spec, ok := strings.Cut(part, "=")
		p := byModel[strings.TrimSpace(model)]
		if !ok || p == nil {
			return nil, fmt.Errorf("--retrain-schedule %q: want model=spec for a model with base data (%s)", part, defaultModelNames())
		}
		p.Cron = strings.TrimSpace(spec)
	}
	for _, dm := range trainer.DefaultModels {
		p := *byModel[dm.Name]
		if err := p.Validate(); err != nil {
			return nil, err
		}
		if p.Cron != "" || p.Threshold > 0 {
			out = append(out, p)
		}
	}
	return out, nil
}

func defaultModelNames() string {
	var names []string
	for _, dm := range trainer.DefaultModels {
		names = append(names, dm.Name)
	}
	return strings.Join(names, ", ")
}

// retrainRunner builds the learning loop on the registry, the snapshot
// store and (when set) the feedback topic; bases are the default models'
// training files under datasets.
func retrainRunner(f *retrainFlags, store registry.Store, promote func(ctx context.Context, name, version, who, why string) error,
	opts inference.ModelOptions, datasets, workDir string, feedback *snapshot.FeedbackSource, enc *trainer.EncoderSource,
	ft *trainer.FineTune, rec *tracking.Recorder, deadLetters string, log *slog.Logger) (*retrain.Runner, error) {
	snaps, err := snapshot.OpenStore(f.snapshots)
	if err != nil {
		return nil, fmt.Errorf("--snapshots %s: %w", f.snapshots, err)
	}
	bases := map[string]retrain.Base{}
	for _, dm := range trainer.DefaultModels {
		bases[dm.Name] = retrain.Base{Path: filepath.Join(datasets, dm.File), TextColumn: dm.TextColumn, LabelColumn: dm.LabelColumn}
	}
	var train func(ctx context.Context, opts trainer.Options) (*trainer.Result, error) // nil: the grid (trainer.Train)
	if f.tuneBudget > 0 {
		train = trainer.TuneTrain(f.tuneBudget)
	}
	base := trainer.Options{MaxEpochs: f.maxEpochs, Encoder: enc}
	if f.fineTune {
		base = trainer.Options{FineTune: ft}
	}
	return retrain.New(retrain.Config{Registry: store, Promote: promote, Snapshots: snaps, Feedback: feedback, Bases: bases,
		Train:           train,
		DeadLetterTopic: deadLetters,
		WorkDir:         workDir, Gate: f.gate, Logger: log,
		Open:    func(dir string) (retrain.Model, error) { return inference.Open(dir, opts) },
		Options: base,
		Record: func(ctx context.Context, model, version, dir string, tags map[string]string) {
			rec.Record(ctx, model, version, dir, tags)
		}})
}

func retrainCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage retrain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mf := &modelsFlags{}
	mf.register(fs)
	var rf retrainFlags
	rf.register(fs)
	datasets := fs.String("datasets", "../shared/data", "training data folder (banking77/, movie-reviews/) (env TRIAGE_DATA_DIR)")
	workDir := fs.String("work-dir", "data/work", "scratch folder for the run; holds the frozen evaluation sets")
	feedbackTopic := fs.String("feedback-topic", "triage.feedback", `human labels to add to the base data ("" trains on the base data alone)`)
	deadLetters := fs.String("dead-letter-topic", "triage.dead-letters", `where refused feedback records go, with the reason ("" keeps them out of the snapshot only)`)
	mlflowURI := fs.String("mlflow-uri", "", `MLflow tracking server for the run ("" keeps a local run log in --runs-dir)`)
	runsDir := fs.String("runs-dir", "data/runs", "local run log when no --mlflow-uri")
	return &ffcli.Command{
		Name:       "retrain",
		ShortUsage: "triage retrain NAME [--registry DIR] [--brokers H:P] [flags]",
		ShortHelp:  "one retraining run now: snapshot → train → evaluate against the champion → gate → register → promote or reject",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, args []string) error {
			args, err := interspersed(fs, args)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return fmt.Errorf("usage: triage retrain NAME (models with base data: %s)", defaultModelNames())
			}
			log, err := mf.g.logger(stderr)
			if err != nil {
				return err
			}
			store, adm, closeFn, err := mf.open()
			if err != nil {
				return err
			}
			defer closeFn()
			opts, err := mf.rt.options()
			if err != nil {
				return err
			}
			var feedback *snapshot.FeedbackSource
			if *feedbackTopic != "" {
				feedback = &snapshot.FeedbackSource{Brokers: splitList(mf.brokers), Topic: *feedbackTopic, Logger: log}
			}
			promote := func(ctx context.Context, name, version, who, why string) error {
				_, err := adm.Promote(ctx, name, version, who, why)
				if errors.Is(err, serving.ErrNotAnnounced) {
					fmt.Fprintln(stderr, "triage: warning:", err)
					return nil
				}
				return err
			}
			tr, mirror, err := tracking.Open(*mlflowURI, *runsDir, tracking.MLflowOptions{Logger: log})
			if err != nil {
				return fmt.Errorf("--mlflow-uri %s: %w", *mlflowURI, err)
			}
			rec := &tracking.Recorder{Tracker: tr, Mirror: mirror, Logger: log}
			adm.Mirror = tracking.MirrorMoves(mirror, log)
			var ft *trainer.FineTune
			if rf.fineTune {
				if ft, err = rf.fineTuning("", encoderdir.VariantFP32, &mf.rt); err != nil {
					return err
				}
			}
			r, err := retrainRunner(&rf, store, promote, opts, *datasets, *workDir, feedback, nil, ft, rec, *deadLetters, log)
			if err != nil {
				return err
			}
			res, err := r.Retrain(ctx, args[0], retrain.TriggerManual, mf.who)
			if err != nil {
				return err
			}
			if mf.asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			verdict := "rejected: " + strings.Join(res.Gate.Reasons, "; ")
			if res.Promoted {
				verdict = "promoted"
			}
			fmt.Fprintf(stdout, "%s %s from snapshot %s: eval macro-F1 %s vs champion %s %s on %d rows — %s (%.1f s)\n",
				res.Model, res.Version, res.Snapshot, strconv.FormatFloat(res.Gate.ChallengerMacroF1, 'f', 4, 64), orDash(res.Gate.Champion),
				strconv.FormatFloat(res.Gate.ChampionMacroF1, 'f', 4, 64), res.Gate.EvalRows, verdict, res.Seconds)
			return nil
		},
	}
}
