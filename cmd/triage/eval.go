package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bundle"
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
	oosLabel := fs.String("oos-label", "", "label marking out-of-scope rows (texts no intent of the model covers): report in-scope accuracy and out-of-scope recall of the abstention rule, at the model's threshold and over thresholds")
	return &ffcli.Command{
		Name:       "eval",
		ShortUsage: "triage eval --model DIR --data FILE --text-column NAME --label-column NAME [--split validation] [--oos-label NAME] --json",
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
			if _, ok := index[*oosLabel]; ok {
				return fmt.Errorf("eval: --oos-label %q is a label the model was trained on, not out of scope", *oosLabel)
			}
			var oos []dataset.Example
			if *oosLabel != "" {
				in := exs[:0:0]
				for _, e := range exs {
					if e.Label == *oosLabel {
						oos = append(oos, e)
					} else {
						in = append(in, e)
					}
				}
				if len(in) == 0 || len(oos) == 0 {
					return fmt.Errorf("eval: --oos-label %q: %s has %d in-scope and %d out-of-scope rows; need both", *oosLabel, *data, len(in), len(oos))
				}
				exs = in
			}
			gold := make([]int, len(exs))
			for i, e := range exs {
				c, ok := index[e.Label]
				if !ok {
					return fmt.Errorf("eval: %s:%d: label %q is not one the model knows (%d labels, e.g. %q)", *data, e.Line, e.Label, len(man.Labels), man.Labels[0])
				}
				gold[i] = c
			}
			inPreds, err := predictAll(ctx, m, exs, *batch)
			if err != nil {
				return err
			}
			pred := make([]int, len(inPreds))
			for i, p := range inPreds {
				pred[i] = index[p.Label]
			}
			rep, err := scoring.Score(man.Labels, gold, pred)
			if err != nil {
				return err
			}
			var oosRep *oosReport
			if *oosLabel != "" {
				oosPreds, err := predictAll(ctx, m, oos, *batch)
				if err != nil {
					return err
				}
				oosRep = newOOSReport(man, *oosLabel, inPreds, gold, pred, oosPreds)
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(struct {
					scoring.Report
					Model inference.ModelRef `json:"model"`
					Data  string             `json:"data"`
					Split string             `json:"split"`
					OOS   *oosReport         `json:"oos,omitempty"`
				}{rep, m.Ref(), *data, *split, oosRep})
			}
			_, err = fmt.Fprintf(stdout, "model %s %s on %s (%s): n=%d accuracy=%.4f macro_f1=%.4f\n",
				man.Name, man.Version, *data, *split, rep.N, rep.Accuracy, rep.MacroF1)
			if err == nil && oosRep != nil {
				err = oosRep.write(stdout)
			}
			return err
		},
	}
}

// predictAll classifies exs' texts in batches.
func predictAll(ctx context.Context, m *inference.Model, exs []dataset.Example, batch int) ([]inference.Prediction, error) {
	out := make([]inference.Prediction, 0, len(exs))
	texts := make([]string, 0, batch)
	for lo := 0; lo < len(exs); lo += batch {
		texts = texts[:0]
		for _, e := range exs[lo:min(lo+batch, len(exs))] {
			texts = append(texts, e.Text)
		}
		ps, err := m.Predict(ctx, texts)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// oosReport is eval's out-of-scope section: how the model's abstention rule
// separates in-scope rows (accuracy and macro-F1 above are on them, ignoring
// abstention) from rows labelled --oos-label.
type oosReport struct {
	Label      string `json:"label"`
	InScope    int    `json:"in_scope"`
	OutOfScope int    `json:"out_of_scope"`
	// Score is the abstention score; Threshold and TargetPrecision are the
	// model's (absent for a model without an abstention rule, which never
	// abstains: its curve uses the calibrated top-1 probability).
	Score           string   `json:"score"`
	Threshold       *float64 `json:"threshold,omitempty"`
	TargetPrecision float64  `json:"target_precision,omitempty"`
	// AtThreshold: in_scope_accuracy counts abstentions on in-scope rows as
	// errors; selective_accuracy is on the accepted in-scope rows;
	// in_scope_coverage is the share of in-scope rows accepted; oos_recall
	// is the share of out-of-scope rows abstained on.
	AtThreshold scoring.OOSPoint   `json:"at_threshold"`
	Curve       []scoring.OOSPoint `json:"curve"`
}

func newOOSReport(man bundle.Manifest, label string, inPreds []inference.Prediction, gold, pred []int, oosPreds []inference.Prediction) *oosReport {
	set := scoring.OOSSet{InScores: make([]float64, len(inPreds)), InCorrect: make([]bool, len(inPreds)), OOSScores: make([]float64, len(oosPreds))}
	for i, p := range inPreds {
		set.InScores[i] = float64(p.Signals.AbstainScore)
		set.InCorrect[i] = gold[i] == pred[i]
	}
	for i, p := range oosPreds {
		set.OOSScores[i] = float64(p.Signals.AbstainScore)
	}
	r := &oosReport{Label: label, InScope: len(inPreds), OutOfScope: len(oosPreds), Score: bundle.ScoreCalibrated,
		AtThreshold: set.At(set.Lowest()), Curve: set.Curve(scoring.DefaultCoverages)}
	if a := man.Abstain; a != nil {
		t := a.Threshold
		r.Score, r.Threshold, r.TargetPrecision = a.Score, &t, a.TargetPrecision
		r.AtThreshold = set.At(t)
	}
	return r
}

func (r *oosReport) write(w io.Writer) error {
	rule := "no abstention rule (never abstains); curve over the calibrated top-1 probability"
	if r.Threshold != nil {
		rule = fmt.Sprintf("score %s, threshold %.4f (target precision %.2f)", r.Score, *r.Threshold, r.TargetPrecision)
	}
	p := r.AtThreshold
	if _, err := fmt.Fprintf(w, "out of scope (label %q): %d in-scope rows, %d out-of-scope rows; %s\n"+
		"  at the threshold: in-scope accuracy (abstentions count as errors) %.4f, selective accuracy (accepted in-scope) %.4f, in-scope coverage %.4f, OOS recall (abstained) %.4f\n"+
		"  threshold  in-scope acc  selective acc  coverage  OOS recall\n",
		r.Label, r.InScope, r.OutOfScope, rule, p.Accuracy, p.SelectiveAccuracy, p.Coverage, p.OOSRecall); err != nil {
		return err
	}
	for _, c := range r.Curve {
		if _, err := fmt.Fprintf(w, "  %9.4f  %12.4f  %13.4f  %8.4f  %10.4f\n", c.Threshold, c.Accuracy, c.SelectiveAccuracy, c.Coverage, c.OOSRecall); err != nil {
			return err
		}
	}
	return nil
}
