package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bench"
)

func benchActiveCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench active", flag.ContinueOnError)
	var g globals
	g.register(fs)
	data := fs.String("data", "", "labelled data: .csv, .tsv or .jsonl (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	labelCol := fs.String("label-column", "label", "column holding the label")
	evalFrac := fs.Float64("eval-fraction", 0.2, "share of each label held out for evaluation, never labelled")
	seedFrac := fs.Float64("seed-fraction", 0.1, "share of each label's remaining rows labelled at the start")
	batch := fs.Int("batch", 0, "labels added per round (0: 5% of the rows outside the evaluation slice)")
	rounds := fs.Int("rounds", 8, "rounds of labelling and retraining")
	seeds := fs.Int("seeds", 3, "runs per strategy, averaged")
	splitSeed := fs.Uint64("split-seed", 0, "seed of the evaluation/seed-set/pool split")
	epochs := fs.Int("epochs", 8, "AdaGrad epochs per retrain")
	lr := fs.Float64("learning-rate", 0.2, "AdaGrad learning rate")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the markdown table")
	return &ffcli.Command{
		Name:       "active",
		ShortUsage: "triage bench active --data FILE [--text-column text] [--label-column label] [--seed-fraction 0.1] [--batch N] [--rounds 8] [--seeds 3] [--json]",
		ShortHelp:  "active learning: evaluation accuracy vs labels for margin sampling beside random sampling, same seed set, same run",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *data == "" {
				return errors.New("bench active: --data is required")
			}
			res, err := bench.Active(ctx, bench.ActiveConfig{
				Data: *data, TextColumn: *textCol, LabelColumn: *labelCol,
				EvalFraction: *evalFrac, SeedFraction: *seedFrac, Batch: *batch, Rounds: *rounds, Seeds: *seeds,
				SplitSeed: *splitSeed, Epochs: *epochs, LearningRate: *lr,
				OnStart: func(in bench.ActiveInfo) {
					if !*asJSON {
						fmt.Fprintf(stdout, "%d rows from %s (%d features x %d classes): %d seed labels, pool %d, evaluation %d; "+
							"%d rounds of %d labels, %d seeds per strategy, %d epochs at lr %g, GOMAXPROCS=%d\n\n",
							in.Rows, *data, in.Features, in.Classes, in.Seed, in.Pool, in.Eval,
							in.Rounds, in.Batch, in.Seeds, in.Epochs, in.LR, in.GOMAXPROCS)
					}
				},
			})
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(res)
			}
			fmt.Fprintln(stdout, "| labels | margin acc | random acc (mean of seeds) | margin − random | margin macro-F1 | random macro-F1 | margin − random F1 |")
			fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|")
			for _, r := range res.Rows {
				fmt.Fprintf(stdout, "| %d | %.4f | %.4f | %+.4f | %.4f | %.4f | %+.4f |\n",
					r.Labels, r.MarginAcc, r.RandomAcc, r.DeltaAcc, r.MarginF1, r.RandomF1, r.DeltaF1)
			}
			// The seed spread is the noise floor against which to read the deltas.
			var spreadM, spreadR float64
			for _, r := range res.Rows {
				spreadM = max(spreadM, slices.Max(r.MarginAccBySeed)-slices.Min(r.MarginAccBySeed))
				spreadR = max(spreadR, slices.Max(r.RandomAccBySeed)-slices.Min(r.RandomAccBySeed))
			}
			_, err = fmt.Fprintf(stdout, "\nwidest accuracy spread across seeds at one row: margin %.4f, random %.4f; %.1f s\n",
				spreadM, spreadR, res.Seconds)
			return err
		},
	}
}
