package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bench"
)

// benchEncoderCommand runs bench.Encoder: Triage's encoder path beside the
// Python a user would write, on the same ONNX file, texts, batches and
// thread count, in one run.
func benchEncoderCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench encoder", flag.ContinueOnError)
	var g globals
	g.register(fs)
	ortLib := fs.String("ort-lib", "", "path to libonnxruntime.so (default: $ONNXRUNTIME_LIB, then .cache/onnxruntime)")
	dir := fs.String("encoder", ".cache/encoders/all-MiniLM-L6-v2", "converted encoder folder (`make encoder`)")
	data := fs.String("data", "", "files whose texts are embedded, comma-separated; mixed and shuffled with a fixed seed (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	batches := fs.String("batches", "1,32,128", "batch sizes, comma-separated")
	dur := fs.Duration("duration", 5*time.Second, "measuring time per batch size and engine")
	threads := fs.Int("threads", 2, "ONNX Runtime intra-op threads, for both engines")
	python := fs.String("python", "python3", "Python with tokenizers and onnxruntime, for the baseline (\"\" skips it)")
	rounds := fs.Int("rounds", 3, "repeat every cell, Triage and Python in turn, and report medians (ratio ranges over rounds)")
	modelOnly := fs.Bool("model-only", false, "tokenise every text once before timing, on both sides: rates of the model call alone")
	variants := fs.String("variants", "fp32,int8", "encoder variants to measure with Triage; the baseline runs the first")
	return &ffcli.Command{
		Name:       "encoder",
		ShortUsage: "triage bench encoder --data A.csv,B.csv [--batches 1,32,128] [--threads 2]",
		ShortHelp:  "sentence-encoder texts/s: Triage vs a Python tokenizers+onnxruntime baseline, and int8 vs fp32",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *data == "" {
				return errors.New("bench encoder: --data is required")
			}
			// Sets the default logger ONNX Runtime session set-up logs through.
			if _, err := g.logger(stderr); err != nil {
				return err
			}
			sizes, err := parseBatchSizes(*batches)
			if err != nil {
				return err
			}
			vars := splitList(*variants)
			if len(vars) == 0 {
				return errors.New("--variants: name at least one of fp32, int8")
			}
			res, err := bench.Encoder(ctx, bench.EncoderConfig{
				Dir: *dir, Variants: vars, Data: splitList(*data), TextColumn: *textCol, Batches: sizes,
				Duration: *dur, Threads: *threads, Rounds: *rounds, ORTLib: *ortLib, Python: *python, ModelOnly: *modelOnly, Stderr: stderr,
				OnStart: func(in bench.EncoderInfo) {
					timed := "tokenisation included"
					if *modelOnly {
						timed = "model call only: texts tokenised before timing"
					}
					fmt.Fprintf(stdout, "encoder %s (%d layers, dim %d, max %d tokens), %d texts from %s mixed, GOMAXPROCS=%d, ORT intra-op threads=%d, %v per cell, %d rounds (medians; Triage/Python range over rounds), %s\n\n",
						*dir, in.Layers, in.HiddenSize, in.MaxLength, in.Texts, *data, in.GOMAXPROCS, *threads, *dur, max(*rounds, 1), timed)
				},
			})
			if err != nil {
				return err
			}
			pyVersion := ""
			if res.Baseline {
				pyVersion = "(ORT " + res.PythonORT + ")"
			}
			fmt.Fprintf(stdout, "| batch | Python %s texts/s | Triage %s texts/s | Triage/Python |", pyVersion, vars[0])
			for _, v := range vars[1:] {
				fmt.Fprintf(stdout, " Triage %s texts/s | %s/%s |", v, v, vars[0])
			}
			fmt.Fprintln(stdout)
			fmt.Fprint(stdout, "|---:|---:|---:|---:|")
			for range vars[1:] {
				fmt.Fprint(stdout, "---:|---:|")
			}
			fmt.Fprintln(stdout)
			for _, r := range res.Rows {
				py, ratio := "-", "-"
				if res.Baseline {
					py, ratio = fmt.Sprintf("%.1f", r.Python), fmt.Sprintf("%.2f (%.2f–%.2f)", r.VsPython, r.VsPythonMin, r.VsPythonMax)
				}
				fmt.Fprintf(stdout, "| %d | %s | %.1f | %s |", r.Batch, py, r.Triage[0], ratio)
				for i := range vars[1:] {
					fmt.Fprintf(stdout, " %.1f | %.2f |", r.Triage[i+1], r.VsFirst[i+1])
				}
				fmt.Fprintln(stdout)
			}
			printPeakRSS(stdout)
			return nil
		},
	}
}
