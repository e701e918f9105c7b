package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/scoring"
)

func evalCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage eval", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	rt.register(fs)
	modelDir := fs.String("model", "", "model bundle directory (required)")
	data := fs.String("data", "", "labelled data: .csv, .tsv or .jsonl (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	labelCol := fs.String("label-column", "label", "column holding the gold label")
	split := fs.String("split", "all", `rows to score: "all", or "validation" to recompute the model's own held-out split (needs the training file)`)
	batch := fs.Int("batch", 256, "texts per ONNX Runtime call")
	asJSON := fs.Bool("json", false, "print one JSON object (default: a short text summary)")
	return &ffcli.Command{
		Name:       "eval",
		ShortUsage: "triage eval --model DIR --data FILE --text-column NAME --label-column NAME [--split validation] --json",
		ShortHelp:  "score a model on labelled data: accuracy, macro-F1, per-class precision/recall/F1",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if *modelDir == "" || *data == "" {
				return errors.New("eval: --model DIR and --data FILE are required")
			}
			if *batch < 1 {
				return errors.New("eval: --batch must be >= 1")
			}
			if *split != "all" && *split != "validation" {
				return fmt.Errorf("eval: --split %q: use all or validation", *split)
			}
			opts, err := rt.options()
			if err != nil {
				return err
			}
			m, err := inference.Open(*modelDir, opts)
			if err != nil {
				return err
			}
			defer m.Close()
			man := m.Manifest()
			ds, err := dataset.Load(*data, dataset.Options{TextColumn: *textCol, LabelColumn: *labelCol})
			if err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			exs := ds.Examples
			switch *split {
			case "all":
			case "validation":
				if ds.SHA256 != man.Training.DataSHA256 {
					return fmt.Errorf("eval: --split validation needs the file the model was trained on (%s, sha256 %.12s); %s differs",
						man.Training.DataPath, man.Training.DataSHA256, *data)
				}
				if _, exs, err = dataset.StratifiedSplit(exs, man.Training.ValFraction, man.Training.Seed); err != nil {
					return fmt.Errorf("eval: %w", err)
				}
			default:
				return fmt.Errorf("eval: --split %q: use all or validation", *split)
			}
			index := make(map[string]int, len(man.Labels))
			for i, l := range man.Labels {
				index[l] = i
			}
			gold := make([]int, len(exs))
			for i, e := range exs {
				c, ok := index[e.Label]
				if !ok {
					return fmt.Errorf("eval: %s:%d: label %q is not one the model knows (%d labels, e.g. %q)", *data, e.Line, e.Label, len(man.Labels), man.Labels[0])
				}
				gold[i] = c
			}
			pred := make([]int, 0, len(exs))
			texts := make([]string, 0, *batch)
			for lo := 0; lo < len(exs); lo += *batch {
				texts = texts[:0]
				for _, e := range exs[lo:min(lo+*batch, len(exs))] {
					texts = append(texts, e.Text)
				}
				ps, err := m.Predict(ctx, texts)
				if err != nil {
					return err
				}
				for _, p := range ps {
					pred = append(pred, index[p.Label])
				}
			}
			rep, err := scoring.Score(man.Labels, gold, pred)
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(struct {
					scoring.Report
					Model inference.ModelRef `json:"model"`
					Data  string             `json:"data"`
					Split string             `json:"split"`
				}{rep, m.Ref(), *data, *split})
			}
			_, err = fmt.Fprintf(stdout, "model %s %s on %s (%s): n=%d accuracy=%.4f macro_f1=%.4f\n",
				man.Name, man.Version, *data, *split, rep.N, rep.Accuracy, rep.MacroF1)
			return err
		},
	}
}
