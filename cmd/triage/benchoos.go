package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bench"
	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/trainer"
)

func benchOOSCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench oos", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	rt.register(fs)
	var ef encoderFlags
	ef.register(fs, "converted sentence encoder folder: also train and evaluate a hybrid model (n-grams + embedding)", "encoder file to train with")
	data := fs.String("data", "", "labelled data, e.g. banking77/train.csv (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	labelCol := fs.String("label-column", "label", "column holding the intent")
	holdout := fs.Int("holdout", 10, "intents left out of training; their texts are the out-of-scope traffic")
	seed := fs.Uint64("seed", 42, "seed of the intent draw, the validation split and training")
	dev := fs.Bool("dev", false, "evaluate on the development draw of intents (disjoint from the evaluation draw, which is then left out of training too): for choosing score forms and defaults")
	workDir := fs.String("work-dir", "", "folder for the in-scope training file and the bundles (default: a temporary folder, removed afterwards)")
	abstain := abstainFlag(fs)
	accuracy := fs.Float64("accuracy", 0.93, "read the curve at this in-scope accuracy (abstentions counted as errors): the best OOS recall reaching it")
	recall := fs.Float64("recall", 0.6, "read the curve at this OOS recall: the most in-scope coverage reaching it, with both accuracies there")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the tables")
	kinds := fs.String("kinds", "", `models to train, comma-separated: linear, hybrid (needs --encoder), fine-tuned (needs --fine-tune) (default: every one set up)`)
	var ftf fineTuneFlags
	ftf.register(fs, true)
	return &ffcli.Command{
		Name:       "oos",
		ShortUsage: "triage bench oos --data FILE --label-column NAME [--encoder DIR] [--holdout 10] [--seed 42] [--dev] [--json]",
		ShortHelp:  "out-of-scope abstention: train without some intents, report in-scope accuracy and out-of-scope recall over thresholds",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *data == "" {
				return errors.New("bench oos: --data is required")
			}
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			dir := *workDir
			if dir == "" {
				if dir, err = os.MkdirTemp("", "triage-bench-oos-"); err != nil {
					return fmt.Errorf("bench oos: %w", err)
				}
				defer os.RemoveAll(dir)
			}
			mo, err := rt.options()
			if err != nil {
				return err
			}
			if stray := strayFineTuneFlags(fs, ftf.on); stray != nil {
				return stray
			}
			var ft *trainer.FineTune
			if ftf.on {
				if ft, err = ftf.build(ef.dir, ef.variant, rt.encoderOpener()); err != nil {
					return err
				}
			}
			src, closeEnc, err := ef.open(mo)
			if err != nil {
				return err
			}
			defer closeEnc()
			cfg := bench.OOSConfig{Data: *data, TextColumn: *textCol, LabelColumn: *labelCol, Holdout: *holdout, Seed: *seed,
				Dev: *dev, WorkDir: dir, Encoder: src, FineTune: ft, Kinds: splitList(*kinds), Model: mo, AbstainPrecision: abstainOption(*abstain),
				Accuracy: *accuracy, Recall: *recall, Logger: log}
			if !*asJSON {
				cfg.OnModel = func(m bench.OOSModel) { writeOOSModel(stdout, m, *accuracy, *recall) }
			}
			res, err := bench.OOS(ctx, cfg)
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(res)
			}
			_, err = fmt.Fprintf(stdout, "%s run: %d intents left out (out of scope): %s\nevaluation draw: %s\ndev draw: %s\n"+
				"trained on %d intents, %d rows; in-scope texts are the trainer's validation split, out-of-scope texts every row of the left-out intents\n",
				res.Mode, len(res.Held), strings.Join(res.Held, ", "), strings.Join(res.Evaluation, ", "), strings.Join(res.Dev, ", "), res.Classes, res.TrainRows)
			return err
		},
	}
}

// writeOOSModel prints one model's operating point and curve as markdown.
func writeOOSModel(w io.Writer, m bench.OOSModel, accuracy, recall float64) {
	fmt.Fprintf(w, "## %s (validation accuracy %.4f; %d in-scope, %d out-of-scope texts; AUROC %.4f; %.0f s)\n\n",
		m.Kind, m.ValAccuracy, m.InScope, m.OutOfScope, m.AUROC, m.Seconds)
	if a := m.Abstain; a != nil {
		fmt.Fprintf(w, "Rule: score %s, threshold %.4f for target precision %.2f (validation precision %.4f, coverage %.4f).\n\n",
			a.Score, a.Threshold, a.TargetPrecision, a.Precision, a.Coverage)
	} else {
		fmt.Fprintf(w, "No abstention rule: the model never abstains; the curve is over the calibrated top-1 probability.\n\n")
	}
	fmt.Fprintln(w, "| threshold | in-scope accuracy (abstain = error) | selective accuracy | in-scope coverage | OOS recall |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|")
	row := func(p scoring.OOSPoint, note string) {
		fmt.Fprintf(w, "| %.4f%s | %.4f | %.4f | %.4f | %.4f |\n", p.Threshold, note, p.Accuracy, p.SelectiveAccuracy, p.Coverage, p.OOSRecall)
	}
	row(m.AtThreshold, " (the bundle's)")
	for _, p := range m.Curve {
		row(p, "")
	}
	fmt.Fprintln(w)
	show := func(p *scoring.OOSPoint, what string) {
		if p == nil {
			fmt.Fprintf(w, "- %s: no threshold\n", what)
			return
		}
		fmt.Fprintf(w, "- %s: threshold %.4f, in-scope accuracy %.4f, selective accuracy %.4f, coverage %.4f, OOS recall %.4f\n",
			what, p.Threshold, p.Accuracy, p.SelectiveAccuracy, p.Coverage, p.OOSRecall)
	}
	show(m.BestRecall, fmt.Sprintf("best OOS recall with in-scope accuracy (abstain = error) >= %.2f", accuracy))
	show(m.AtRecall, fmt.Sprintf("most in-scope coverage with OOS recall >= %.2f", recall))
	fmt.Fprintln(w, "\n(both readings pick their threshold on this very set; the bundle's threshold was chosen on validation alone)")
	fmt.Fprintln(w)
}
