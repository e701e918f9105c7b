package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bench"
)

func benchCommand(stdout, stderr io.Writer) *ffcli.Command {
	c := &ffcli.Command{
		Name:        "bench",
		ShortUsage:  "triage bench <predict|stream|encoder|active|rest|oos> [flags]",
		ShortHelp:   "benchmarks that compare against a baseline measured in the same run",
		Subcommands: []*ffcli.Command{benchPredictCommand(stdout, stderr), benchStreamCommand(stdout, stderr), benchEncoderCommand(stdout, stderr), benchActiveCommand(stdout, stderr), benchRestCommand(stdout, stderr), benchOOSCommand(stdout, stderr)},
	}
	c.Exec = groupExec(&c, "triage bench")
	return c
}

func benchPredictCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench predict", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	rt.register(fs)
	modelDir := fs.String("model", "", "model bundle directory (required)")
	data := fs.String("data", "", "file whose texts are classified (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	batches := fs.String("batches", "1,32,256", "batch sizes, comma-separated")
	dur := fs.Duration("duration", 3*time.Second, "measuring time per batch size and engine")
	return &ffcli.Command{
		Name:       "predict",
		ShortUsage: "triage bench predict --model DIR --data FILE [--batches 1,32,256] [--duration 3s]",
		ShortHelp:  "texts/s and latency through ONNX Runtime beside the pure-Go reference, same texts, same run",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *modelDir == "" || *data == "" {
				return errors.New("bench predict: --model and --data are required")
			}
			sizes, err := parseBatchSizes(*batches)
			if err != nil {
				return err
			}
			opts, err := rt.options()
			if err != nil {
				return err
			}
			_, err = bench.Predict(ctx, bench.PredictConfig{
				ModelDir: *modelDir, Model: opts, Data: *data, TextColumn: *textCol, Batches: sizes, Duration: *dur,
				OnStart: func(in bench.PredictInfo) {
					fmt.Fprintf(stdout, "model %s %s (%d features x %d classes), %d texts from %s, GOMAXPROCS=%d, ORT intra-op threads=%d, %v per cell\n\n",
						in.Model, in.Version, in.Features, in.Classes, in.Texts, *data, in.GOMAXPROCS, rt.intraThreads, *dur)
					fmt.Fprintln(stdout, "| batch | engine | texts/s | per-text µs | p50 call µs | p99 call µs | model-only texts/s | ORT/Go texts/s |")
					fmt.Fprintln(stdout, "|---:|---|---:|---:|---:|---:|---:|---:|")
				},
				OnRow: func(r bench.PredictRow) {
					ratio := "1.00 (baseline)"
					if !r.Baseline {
						ratio = fmt.Sprintf("%.2f", r.VsBaseline)
					}
					fmt.Fprintf(stdout, "| %d | %s | %.0f | %.1f | %.0f | %.0f | %.0f | %s |\n",
						r.Batch, r.Engine, r.Full.Rate, 1e6/r.Full.Rate, r.Full.P50, r.Full.P99, r.ModelOnly.Rate, ratio)
				},
			})
			if err == nil {
				printPeakRSS(stdout)
			}
			return err
		},
	}
}

// parseBatchSizes reads --batches: positive integers, comma-separated.
func parseBatchSizes(list string) ([]int, error) {
	var sizes []int
	for _, s := range splitList(list) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--batches: %q is not a positive integer", s)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		return nil, errors.New("--batches: name at least one batch size")
	}
	return sizes, nil
}

// printPeakRSS reports this process's peak resident set, beside the
// throughput of an in-process benchmark (both engines share the process).
func printPeakRSS(w io.Writer) {
	if mb := bench.PeakRSSMB(os.Getpid()); mb > 0 {
		fmt.Fprintf(w, "\npeak RSS of this process (VmHWM): %.0f MB\n", mb)
	}
}
