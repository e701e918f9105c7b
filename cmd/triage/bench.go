package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/dataset"
)

func benchCommand(stdout, stderr io.Writer) *ffcli.Command {
	c := &ffcli.Command{
		Name:        "bench",
		ShortUsage:  "triage bench <predict|stream|encoder> [flags]",
		ShortHelp:   "benchmarks that compare against a baseline measured in the same run",
		Subcommands: []*ffcli.Command{benchPredictCommand(stdout, stderr), benchStreamCommand(stdout, stderr), benchEncoderCommand(stdout, stderr)},
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
			m, err := inference.Open(*modelDir, opts)
			if err != nil {
				return err
			}
			defer m.Close()
			ref, err := inference.OpenReference(*modelDir, rt.topK)
			if err != nil {
				return err
			}
			ds, err := dataset.Load(*data, dataset.Options{TextColumn: *textCol, LabelOptional: true})
			if err != nil {
				return err
			}
			texts := make([]string, len(ds.Examples))
			for i, e := range ds.Examples {
				texts[i] = e.Text
			}
			// Featurised once: the model-only column measures the model alone.
			fz := m.Featurizer()
			vecs := make([]featurizer.Vector, len(texts))
			for i, t := range texts {
				vecs[i] = fz.Transform(t)
			}
			fmt.Fprintf(stdout, "model %s %s (%d features x %d classes), %d texts from %s, GOMAXPROCS=%d, ORT intra-op threads=%d, %v per cell\n\n",
				m.Manifest().Name, m.Manifest().Version, m.Manifest().Graph.NumFeatures, m.Manifest().Graph.NumClasses,
				len(texts), *data, runtime.GOMAXPROCS(0), rt.intraThreads, *dur)
			fmt.Fprintln(stdout, "| batch | engine | texts/s | per-text µs | p50 call µs | p99 call µs | model-only texts/s | ORT/Go texts/s |")
			fmt.Fprintln(stdout, "|---:|---|---:|---:|---:|---:|---:|---:|")
			for _, bs := range sizes {
				engines := []struct {
					name  string
					full  func([]string) error
					model func([]featurizer.Vector) error
				}{
					{"pure Go", func(ts []string) error { _, err := ref.Predict(ctx, ts); return err },
						func(vs []featurizer.Vector) error { _, err := ref.Probabilities(vs); return err }},
					{"ONNX Runtime", func(ts []string) error { _, err := m.Predict(ctx, ts); return err },
						func(vs []featurizer.Vector) error { _, err := m.Probabilities(ctx, vs); return err }},
				}
				var goRate float64
				for _, e := range engines {
					full, err := measure(ctx, texts, bs, *dur, e.full)
					if err != nil {
						return fmt.Errorf("bench %s batch %d: %w", e.name, bs, err)
					}
					modelOnly, err := measure(ctx, vecs, bs, *dur, e.model)
					if err != nil {
						return fmt.Errorf("bench %s batch %d: %w", e.name, bs, err)
					}
					ratio := "1.00 (baseline)"
					if e.name == "pure Go" {
						goRate = full.rate
					} else {
						ratio = fmt.Sprintf("%.2f", full.rate/goRate)
					}
					fmt.Fprintf(stdout, "| %d | %s | %.0f | %.1f | %.0f | %.0f | %.0f | %s |\n",
						bs, e.name, full.rate, 1e6/full.rate, full.p50, full.p99, modelOnly.rate, ratio)
				}
			}
			return nil
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

type benchResult struct {
	rate     float64 // items per second
	p50, p99 float64 // per call, µs
}

// measure calls fn on consecutive batches of items (wrapping around) for
// about d, after a short warm-up, and reports throughput and call latency.
func measure[T any](ctx context.Context, items []T, batch int, d time.Duration, fn func([]T) error) (benchResult, error) {
	buf := make([]T, batch)
	next := 0
	fill := func() {
		for i := range buf {
			buf[i] = items[next]
			next = (next + 1) % len(items)
		}
	}
	for range 3 { // warm-up: first ORT runs allocate arenas
		fill()
		if err := fn(buf); err != nil {
			return benchResult{}, err
		}
	}
	var lat []float64
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return benchResult{}, err
		}
		fill()
		t0 := time.Now()
		if err := fn(buf); err != nil {
			return benchResult{}, err
		}
		lat = append(lat, float64(time.Since(t0).Microseconds()))
		n += batch
	}
	elapsed := time.Since(start).Seconds()
	slices.Sort(lat)
	return benchResult{rate: float64(n) / elapsed, p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}, nil
}
