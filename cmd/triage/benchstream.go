package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/internal/dataset"
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
			ds, err := dataset.Load(*data, dataset.Options{TextColumn: *textCol, LabelOptional: true})
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			texts := make([]string, len(ds.Examples))
			for i, e := range ds.Examples {
				texts[i] = e.Text
			}
			runs := []streamRun{
				{name: "a) passthrough, no model", route: passthroughRoute, batch: 256, wait: "5ms"},
				{name: "b) linear model, micro-batched (256, 5ms)", route: *modelDir, batch: 256, wait: "5ms"},
				{name: "c) linear model, batch size 1", route: *modelDir, batch: 1, wait: "0s"},
			}
			fmt.Fprintf(stdout, "brokers %s, %d-partition input, %d messages (throughput) + %d at %d/s (latency), texts from %s\n\n",
				*brokers, *partitions, *n, *latN, *latRate, *data)
			fmt.Fprintln(stdout, "| run | msgs/s | p50 ms | p99 ms | consumer peak RSS MB |")
			fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|")
			for i := range runs {
				r := &runs[i]
				if err := r.measure(ctx, self, splitList(*brokers), *ortLib, texts, *n, *latN, *latRate, int32(*partitions), stderr); err != nil {
					return fmt.Errorf("bench stream %s: %w", r.name, err)
				}
				fmt.Fprintf(stdout, "| %s | %.0f | %.1f | %.1f | %.0f |\n", r.name, r.rate, r.p50, r.p99, r.rssMB)
			}
			fmt.Fprintf(stdout, "\n(b)/(a) throughput = %.2f; (b)/(c) throughput = %.2f\n", runs[1].rate/runs[0].rate, runs[1].rate/runs[2].rate)
			return nil
		},
	}
}

type streamRun struct {
	name, route, wait string
	batch             int
	rate, p50, p99    float64
	rssMB             float64
}

func (r *streamRun) measure(ctx context.Context, self string, brokers []string, ortLib string, texts []string,
	n, latN, latRate int, partitions int32, stderr io.Writer) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(100000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out, dlq, group := "bench-in-"+suffix, "bench-out-"+suffix, "bench-dlq-"+suffix, "bench-"+suffix
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, in, out, dlq); err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	send := func(id, text string, at map[string]time.Time, mu *sync.Mutex) {
		v, _ := json.Marshal(map[string]string{"id": id, "text": text})
		if at != nil {
			mu.Lock()
			at[id] = time.Now()
			mu.Unlock()
		}
		cl.Produce(ctx, &kgo.Record{Topic: in, Key: []byte(id), Value: v}, nil)
	}
	for i := range n {
		send("t"+strconv.Itoa(i), texts[i%len(texts)], nil, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("pre-produce: %w", err)
	}

	// Reader: committed predictions, with arrival times.
	reader, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(out),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer reader.Close()
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	go func() {
		for rctx.Err() == nil {
			fs := reader.PollFetches(rctx)
			now := time.Now()
			mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) { arrived[string(rec.Key)] = now })
			mu.Unlock()
		}
	}()

	args := []string{"consumer", "--brokers", strings.Join(brokers, ","), "--group", group, "--route", in + "=" + r.route,
		"--predictions-topic", out, "--dead-letter-topic", dlq, "--batch-max", strconv.Itoa(r.batch), "--batch-wait", r.wait,
		"--metrics-addr", "", "--log-level", "warn", "--instance-id", "bench"}
	if ortLib != "" {
		args = append(args, "--ort-lib", ortLib)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	count := func(prefix string) (int, time.Time, time.Time) {
		mu.Lock()
		defer mu.Unlock()
		c := 0
		var first, last time.Time
		for id, t := range arrived {
			if strings.HasPrefix(id, prefix) {
				c++
				if first.IsZero() || t.Before(first) {
					first = t
				}
				if t.After(last) {
					last = t
				}
			}
		}
		return c, first, last
	}
	waitAll := func(prefix string, want int) (time.Time, time.Time, error) {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			c, first, last := count(prefix)
			if c >= want {
				return first, last, nil
			}
			if time.Now().After(deadline) {
				return first, last, fmt.Errorf("only %d of %d predictions arrived", c, want)
			}
			select {
			case <-ctx.Done():
				return first, last, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	first, last, err := waitAll("t", n)
	if err != nil {
		return err
	}
	// Steady state: from the first to the last prediction, so model loading
	// and the group join do not count.
	r.rate = float64(n-1) / last.Sub(first).Seconds()

	sent := map[string]time.Time{}
	var smu sync.Mutex
	tick := time.NewTicker(time.Second / time.Duration(max(latRate, 1)))
	for i := range latN {
		<-tick.C
		send("l"+strconv.Itoa(i), texts[(i*7)%len(texts)], sent, &smu)
	}
	tick.Stop()
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if _, _, err := waitAll("l", latN); err != nil {
		return err
	}
	var lat []float64
	mu.Lock()
	for id, t0 := range sent {
		lat = append(lat, float64(arrived[id].Sub(t0).Microseconds())/1000)
	}
	mu.Unlock()
	slices.Sort(lat)
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	r.rssMB = peakRSSMB(cmd.Process.Pid)
	return nil
}

// peakRSSMB reads VmHWM (peak resident set) of a live process.
func peakRSSMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
