package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bench"
)

// defaultBenchPython is the venv scripts/lib/bench-python.sh creates.
const defaultBenchPython = ".cache/bench-venv/bin/python"

func benchStreamCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench stream", flag.ContinueOnError)
	var g globals
	g.register(fs)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses")
	modelDir := fs.String("model", "", "model bundle for the model runs (required)")
	data := fs.String("data", "", "file whose texts are sent, and the Python baseline's training data (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	labelCol := fs.String("label-column", "category", "column holding the label (to train the Python baseline)")
	n := fs.Int("messages", 200000, "messages for the throughput phase of each run")
	repeat := fs.Int("repeat", 3, "repetitions of every run; medians and ranges are reported")
	latN := fs.Int("latency-messages", 3000, "messages for the latency phase")
	latRate := fs.Int("latency-rate", 1000, "messages/s sent in the latency phase")
	partitions := fs.Int("partitions", 3, "partitions of the input topic (>= 2 for the 2-process Python run)")
	ortLib := fs.String("ort-lib", "", "passed to the consumer processes")
	python := fs.String("python", defaultBenchPython, "Python of the baseline venv (confluent-kafka, scikit-learn); \"\" skips the Python runs")
	pyScripts := fs.String("python-scripts", "scripts/bench", "folder with python_consumer.py and train_sklearn.py")
	pyModel := fs.String("python-model", ".cache/bench/sklearn-banking77.pkl", "the baseline's scikit-learn pickle (trained and cached when missing)")
	before := fs.String("before", "", "an earlier triage binary whose micro-batched consumer also runs (b0), for before/after in one run")
	profileDir := fs.String("profile-dir", "", "write a Go CPU profile per Triage consumer process to DIR/<run>-<rep>.pprof")
	return &ffcli.Command{
		Name:       "stream",
		ShortUsage: "triage bench stream --brokers ADDR --model DIR --data FILE",
		ShortHelp:  "end-to-end msgs/s, CPU/msg, latency and peak RSS: passthrough, micro-batched model, batch size 1, Python baseline ×1 and ×2",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *modelDir == "" || *data == "" {
				return errors.New("bench stream: --model and --data are required")
			}
			if *python != "" {
				if _, err := os.Stat(*python); err != nil {
					return fmt.Errorf("bench stream: no Python baseline at --python %s: run `bash scripts/bench-stream.sh` "+
						"(creates the venv via scripts/lib/bench-python.sh and runs the whole comparison), or pass --python \"\" to skip the Python runs", *python)
				}
			}
			// The consumers measured are this binary's own `consumer` role.
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench stream: locate the triage binary: %w", err)
			}
			res, err := bench.Stream(ctx, bench.StreamConfig{
				Brokers: splitList(*brokers), ModelDir: *modelDir, Data: *data, TextColumn: *textCol, LabelColumn: *labelCol,
				Messages: *n, Partitions: int32(*partitions), Repeat: *repeat, LatencyMessages: *latN, LatencyRate: *latRate,
				Triage: self, Before: *before, ORTLib: *ortLib, Stderr: stderr,
				Python: *python, PythonScripts: *pyScripts, PythonModel: *pyModel, ProfileDir: *profileDir,
				OnStart: func() {
					fmt.Fprintf(stdout, "brokers %s, %d-partition input, %d messages (throughput) + %d at %d/s (latency) per run, %d repetitions, texts from %s\n",
						*brokers, *partitions, *n, *latN, *latRate, *repeat, *data)
					if *python != "" && *partitions%2 != 0 {
						fmt.Fprintf(stdout, "note: %d partitions split unevenly over the 2 Python processes\n", *partitions)
					}
				},
				OnRun: func(r bench.StreamRun) {
					// Progress: a repetition takes from seconds to minutes.
					fmt.Fprintf(stderr, "bench stream: rep %d %s: %.0f msgs/s, %.1f µs CPU/msg, p50 %.1f ms, p99 %.1f ms, peak RSS %.0f MB\n",
						r.Rep, r.Name, r.Rate, r.CPUPerMsg, r.P50, r.P99, r.PeakRSSMB)
				},
			})
			if err != nil {
				return err
			}
			writeStreamReport(stdout, res, *latRate)
			return nil
		},
	}
}

// writeStreamReport prints the summary table (median and min–max), the
// acceptance ratios and every repetition.
func writeStreamReport(w io.Writer, res bench.StreamResult, latRate int) {
	rng := func(s bench.Stat, f string) string {
		return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Median, s.Min, s.Max)
	}
	fmt.Fprintln(w, "\nMedian (min–max) over repetitions. msgs/s and CPU/msg are over the steady-state window (first to last")
	fmt.Fprintln(w, "prediction); CPU is utime+stime of the consumer process(es) from /proc/PID/stat. Latency at the latency rate.")
	fmt.Fprintln(w, "Peak RSS is VmHWM, summed over processes for multi-process runs.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | procs | msgs/s | CPU µs/msg | p50 ms | p99 ms | peak RSS MB (max) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	saturated := false
	for _, s := range res.Summary {
		// Below the offered rate the latency phase measures a growing queue.
		mark := ""
		if s.Rate.Min < float64(latRate) {
			mark, saturated = " †", true
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %.1f%s | %s%s | %.0f |\n", s.Name, s.Procs,
			rng(s.Rate, "%.0f"), rng(s.CPU, "%.1f"), s.P50.Median, mark, rng(s.P99, "%.1f"), mark, s.RSS.Max)
	}
	if saturated {
		fmt.Fprintf(w, "\n† throughput below the %d msgs/s latency rate: that latency includes a growing backlog.\n", latRate)
	}
	if len(res.Ratios) > 0 {
		fmt.Fprintln(w, "\n| ratio | median | range | goal | met |")
		fmt.Fprintln(w, "|---|---:|---:|---|---|")
		for _, r := range res.Ratios {
			met := ""
			if r.Goal != "" {
				met = map[bool]string{true: "yes", false: "no"}[r.Met]
			}
			fmt.Fprintf(w, "| %s | %.2f | %.2f–%.2f | %s | %s |\n", r.Name, r.Median, r.Min, r.Max, r.Goal, met)
		}
	}
	fmt.Fprintln(w, "\n| rep | run | msgs/s | CPU µs/msg | p50 ms | p99 ms | peak RSS MB | profile |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---|")
	for _, r := range res.Runs {
		fmt.Fprintf(w, "| %d | %s | %.0f | %.1f | %.1f | %.1f | %.0f | %s |\n", r.Rep, r.Name, r.Rate, r.CPUPerMsg, r.P50, r.P99, r.PeakRSSMB,
			r.Profile)
	}
}
