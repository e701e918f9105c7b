package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bench"
)

func benchRestCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench rest", flag.ContinueOnError)
	var g globals
	g.register(fs)
	url := fs.String("url", "", "predict endpoint, e.g. http://127.0.0.1:8080/v1/predict (required)")
	key := fs.String("key", "", "API key, sent as Authorization: Bearer (\"\" sends none)")
	data := fs.String("data", "", "file whose texts become request bodies, cycled (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	model := fs.String("model-name", "", `the body's "model" field ("" leaves it out)`)
	get := fs.Bool("get", false, "send body-less GETs to --url instead (e.g. /healthz: the floor this driver and machine set; --data unused)")
	name := fs.String("name", "server", "label of this server in the output")
	rates := fs.String("rates", "500,1000,2000,5000,10000,15000,20000", "offered requests/s, comma-separated, in order")
	dur := fs.Duration("duration", 5*time.Second, "measured time per rate")
	warmup := fs.Duration("warmup", time.Second, "unmeasured load at the same rate before each measurement")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout (a timeout is a failure)")
	maxP99 := fs.Duration("max-p99", 100*time.Millisecond, "p99 bound for a rate to count as sustained")
	stopAfter := fs.Int("stop-after", 2, "stop after this many unsustained rates in a row (0 = run every rate)")
	jsonOut := fs.String("json", "", "append one JSON line {name, rates, saturation} to this file")
	return &ffcli.Command{
		Name:       "rest",
		ShortUsage: "triage bench rest --url URL (--data FILE | --get) [--rates 500,1000,...] [--duration 5s]",
		ShortHelp:  "open-loop (vegeta) latency and throughput of a POST /v1/predict server at fixed request rates",
		LongHelp: "Sends one text per request at each fixed rate whether or not earlier requests were answered,\n" +
			"and reports p50/p99/p99.9 latency, success and achieved throughput per rate. A rate is sustained\n" +
			"when throughput >= 95% of it, success >= 99.9% and p99 <= --max-p99; saturation is the highest\n" +
			"sustained rate. The driver runs in this process: on a shared machine it takes CPU from the server.",
		FlagSet: fs,
		Options: parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *url == "" || (*data == "" && !*get) {
				return errors.New("bench rest: --url and --data (or --get) are required")
			}
			var rs []int
			for _, s := range splitList(*rates) {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 {
					return fmt.Errorf("--rates: %q is not a positive integer", s)
				}
				rs = append(rs, n)
			}
			h := http.Header{}
			if *key != "" {
				h.Set("Authorization", "Bearer "+*key)
			}
			fmt.Fprintf(stdout, "%s: %s, open loop, %v per rate after %v warm-up\n\n", *name, *url, *dur, *warmup)
			fmt.Fprintln(stdout, "| req/s offered | achieved | success | p50 ms | p99 ms | p99.9 ms | sustained |")
			fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---|")
			rows, err := bench.Rest(ctx, bench.RestConfig{
				URL: *url, Header: h, Get: *get, Data: *data, TextColumn: *textCol, Model: *model, Rates: rs,
				Duration: *dur, Warmup: *warmup, Timeout: *timeout, MaxP99: *maxP99, StopAfter: *stopAfter,
				OnRate: func(r bench.RestRate) {
					fmt.Fprintf(stdout, "| %d | %.0f | %.2f%% | %.3f | %.3f | %.3f | %v |\n",
						r.Rate, r.Throughput, 100*r.Success, r.P50, r.P99, r.P999, r.Sustained)
					for _, e := range r.Errors {
						fmt.Fprintf(stderr, "bench rest: %s at %d req/s: %s\n", *name, r.Rate, e)
					}
				},
			})
			if err != nil {
				return err
			}
			sat := bench.Saturation(rows)
			fmt.Fprintf(stdout, "\nsaturation: %d req/s\n", sat)
			if *jsonOut == "" {
				return nil
			}
			line, err := json.Marshal(map[string]any{"name": *name, "rates": rows, "saturation": sat})
			if err != nil {
				return err
			}
			f, err := os.OpenFile(*jsonOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.Write(append(line, '\n')); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
}
