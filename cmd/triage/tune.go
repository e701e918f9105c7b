package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/trainer"
)

func tuneCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage tune", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var opts trainer.TuneOptions
	fs.StringVar(&opts.DataPath, "data", "", "training data: .csv, .tsv or .jsonl file (required)")
	fs.StringVar(&opts.TextColumn, "text-column", "text", "column (CSV header or JSON key) holding the text")
	fs.StringVar(&opts.LabelColumn, "label-column", "label", "column holding the label")
	fs.StringVar(&opts.OutDir, "out", "", "bundle directory for the refitted model (required; replaced if it exists)")
	fs.StringVar(&opts.Name, "name", "", "model name (default: base name of --out)")
	fs.StringVar(&opts.Version, "model-version", "", "model version (default: UTC timestamp)")
	fs.Uint64Var(&opts.Seed, "seed", 42, "seed for the splits, the sampled settings and the optimiser")
	fs.IntVar(&opts.Trials, "trials", 0, "search trials (0 = as many as --budget allows, or 81 without a budget)")
	fs.DurationVar(&opts.Budget, "budget", 0, "time for loading, the defaults' baseline and the search, e.g. 10m (0 = no limit); the final fits come on top")
	fs.IntVar(&opts.Workers, "workers", 0, "trials trained in parallel (0 = GOMAXPROCS)")
	fs.Float64Var(&opts.HoldoutFraction, "holdout-fraction", 0.1, "share of each label kept out of search and refit, to measure the refit")
	fs.Float64Var(&opts.ValFraction, "val-fraction", 0.1, "share of each label of the rest that the search validates on")
	fs.IntVar(&opts.MaxEpochs, "max-epochs", 27, "epochs of the top rung (rungs train 1, eta, eta², ... epochs)")
	fs.IntVar(&opts.Patience, "patience", 3, "stop a trial after this many epochs without validation gain")
	fs.IntVar(&opts.Eta, "eta", 3, "halving rate: the best 1/eta of each rung train on")
	abstain := abstainFlag(fs)
	var rt runtimeFlags
	fs.StringVar(&rt.ortLib, "ort-lib", "", "path to libonnxruntime.so, for --encoder (default: $ONNXRUNTIME_LIB, then .cache/onnxruntime)")
	rt.registerEncoder(fs)
	var ef encoderFlags
	ef.register(fs, "converted sentence encoder folder (`make encoder`): tune a hybrid head, searching the embedding's scale too",
		"encoder file to train with and ship")
	features := fs.String("features", "", `head inputs, comma-separated: "ngram", "encoder" (default: ngram, plus encoder when --encoder is set)`)
	return &ffcli.Command{
		Name:       "tune",
		ShortUsage: "triage tune --data FILE --text-column C --label-column C --out DIR [--trials N] [--budget 10m] [--workers N] [--seed N] [--encoder DIR]",
		ShortHelp:  "search featuriser and optimiser settings (random search, successive halving), refit the best and write its bundle",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("tune: unexpected arguments %q (flags go before them?)", args)
			}
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			opts.Logger = log
			opts.AbstainPrecision = abstainOption(*abstain)
			opts.Features = splitList(*features)
			src, closeEnc, err := ef.openForTraining(&rt)
			if err != nil {
				return err
			}
			defer closeEnc()
			opts.Encoder = src
			res, err := trainer.Tune(ctx, opts)
			if err != nil {
				return err
			}
			return json.NewEncoder(stdout).Encode(tuneSummary(res))
		},
	}
}

// tuneSummary is the one JSON object `triage tune` prints.
func tuneSummary(res trainer.TuneResult) map[string]any {
	m := res.Manifest
	return map[string]any{
		"bundle": res.Dir, "name": m.Name, "version": m.Version,
		"best": map[string]any{"source": res.Best.Source, "trial": res.Best.Index, "params": res.Best.Params,
			"epochs": res.Best.BestEpoch, "val_accuracy": res.Best.ValAccuracy, "val_macro_f1": res.Best.ValMacroF1},
		"defaults": map[string]any{"params": res.Defaults.Params, "epochs": res.Defaults.BestEpoch,
			"val_accuracy": res.Defaults.ValAccuracy, "val_macro_f1": res.Defaults.ValMacroF1},
		"trials": res.SearchTrials, "pruned": res.Pruned, "stopped_by_budget": res.StoppedByBudget,
		"featurisations": res.Featurisations,
		"holdout":        res.Holdout,
		"rows":           map[string]any{"train": res.TrainRows, "validation": res.ValRows, "holdout": res.Holdout.N},
		"search_seconds": res.SearchSeconds, "seconds": res.Seconds,
	}
}
