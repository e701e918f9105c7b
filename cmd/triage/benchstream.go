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

func benchStreamCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench stream", flag.ContinueOnError)
	var g globals
	g.register(fs)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses")
	modelDir := fs.String("model", "", "model bundle for the model runs (required)")
	data := fs.String("data", "", "file whose texts are sent (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	n := fs.Int("messages", 50000, "messages for the throughput phase")
	latN := fs.Int("latency-messages", 3000, "messages for the latency phase")
	latRate := fs.Int("latency-rate", 1000, "messages/s sent in the latency phase")
	partitions := fs.Int("partitions", 3, "partitions of the input topic")
	ortLib := fs.String("ort-lib", "", "passed to the consumer processes")
	return &ffcli.Command{
		Name:       "stream",
		ShortUsage: "triage bench stream --brokers ADDR --model DIR --data FILE",
		ShortHelp:  "end-to-end msgs/s and produce→prediction latency: passthrough vs micro-batched model vs batch size 1",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *modelDir == "" || *data == "" {
				return errors.New("bench stream: --model and --data are required")
			}
			// The consumers measured are this binary's own `consumer` role.
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench stream: locate the triage binary: %w", err)
			}
			res, err := bench.Stream(ctx, bench.StreamConfig{
				Brokers: splitList(*brokers), ModelDir: *modelDir, Data: *data, TextColumn: *textCol,
				Messages: *n, Partitions: int32(*partitions), LatencyMessages: *latN, LatencyRate: *latRate,
				Triage: self, ORTLib: *ortLib, Stderr: stderr,
				OnStart: func() {
					fmt.Fprintf(stdout, "brokers %s, %d-partition input, %d messages (throughput) + %d at %d/s (latency), texts from %s\n\n",
						*brokers, *partitions, *n, *latN, *latRate, *data)
					fmt.Fprintln(stdout, "| run | msgs/s | p50 ms | p99 ms | consumer peak RSS MB |")
					fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|")
				},
				OnRun: func(r bench.StreamRun) {
					fmt.Fprintf(stdout, "| %s | %.0f | %.1f | %.1f | %.0f |\n", r.Name, r.Rate, r.P50, r.P99, r.PeakRSSMB)
				},
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "\n(b)/(a) throughput = %.2f; (b)/(c) throughput = %.2f\n", res.BatchedVsPassthrough, res.BatchedVsBatch1)
			return nil
		},
	}
}
