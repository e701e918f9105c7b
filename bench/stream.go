package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/consumer"
)

// StreamConfig configures Stream.
type StreamConfig struct {
	Brokers    []string
	ModelDir   string // model bundle for the model runs
	Data       string // file whose texts are sent
	TextColumn string
	Messages   int   // messages for the throughput phase
	Partitions int32 // of the input topic

	LatencyMessages int // messages for the latency phase
	LatencyRate     int // messages/s sent in the latency phase

	// Triage is the triage binary whose `consumer` subcommand is measured:
	// a real process, so its peak RSS is its own.
	Triage string
	ORTLib string    // passed to the consumer processes
	Stderr io.Writer // the consumer processes' stderr

	// OnStart, if set, is called once the texts are loaded, before the
	// first run.
	OnStart func()
	// OnRun, if set, is called as each run finishes; a run takes minutes.
	OnRun func(StreamRun)
}

// StreamRun is one consumer configuration's figures.
type StreamRun struct {
	Name      string
	Rate      float64 // steady-state msgs/s
	P50, P99  float64 // produce → prediction visible, ms
	PeakRSSMB float64 // the consumer process's VmHWM
}

// StreamResult holds the runs in order: (a) passthrough, (b) model,
// micro-batched, (c) model, batch size 1.
type StreamResult struct {
	Runs []StreamRun
	// BatchedVsPassthrough is (b)/(a) throughput: the model's cost.
	BatchedVsPassthrough float64
	// BatchedVsBatch1 is (b)/(c) throughput: what micro-batching buys.
	BatchedVsBatch1 float64
}

// streamSetup is the consumer configuration of one run.
type streamSetup struct {
	name, route, wait string
	batch             int
}

// Stream measures end-to-end msgs/s and produce→prediction latency through
// real `triage consumer` processes: passthrough, micro-batched model and
// batch size 1, each on fresh topics.
func Stream(ctx context.Context, cfg StreamConfig) (StreamResult, error) {
	texts, err := loadTexts(cfg.Data, cfg.TextColumn)
	if err != nil {
		return StreamResult{}, err
	}
	setups := []streamSetup{
		{name: "a) passthrough, no model", route: consumer.PassthroughRoute, batch: 256, wait: "5ms"},
		{name: "b) linear model, micro-batched (256, 5ms)", route: cfg.ModelDir, batch: 256, wait: "5ms"},
		{name: "c) linear model, batch size 1", route: cfg.ModelDir, batch: 1, wait: "0s"},
	}
	if cfg.OnStart != nil {
		cfg.OnStart()
	}
	var res StreamResult
	for _, s := range setups {
		r, err := measureStream(ctx, cfg, s, texts)
		if err != nil {
			return res, fmt.Errorf("bench stream %s: %w", s.name, err)
		}
		res.Runs = append(res.Runs, r)
		if cfg.OnRun != nil {
			cfg.OnRun(r)
		}
	}
	res.BatchedVsPassthrough = res.Runs[1].Rate / res.Runs[0].Rate
	res.BatchedVsBatch1 = res.Runs[1].Rate / res.Runs[2].Rate
	return res, nil
}

// measureStream pre-produces cfg.Messages, starts a consumer and times them
// through it, then sends cfg.LatencyMessages at cfg.LatencyRate and times
// each one's prediction.
func measureStream(ctx context.Context, cfg StreamConfig, s streamSetup, texts []string) (StreamRun, error) {
	r := StreamRun{Name: s.name}
	brokers, n, latN := cfg.Brokers, cfg.Messages, cfg.LatencyMessages
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(100000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return r, fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out, dlq, group := "bench-in-"+suffix, "bench-out-"+suffix, "bench-dlq-"+suffix, "bench-"+suffix
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, cfg.Partitions, 1, nil, in, out, dlq); err != nil {
		return r, fmt.Errorf("create topics: %w", err)
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
		return r, fmt.Errorf("pre-produce: %w", err)
	}

	// Reader: committed predictions, with arrival times.
	reader, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(out),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return r, fmt.Errorf("reader: %w", err)
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

	args := []string{"consumer", "--brokers", strings.Join(brokers, ","), "--group", group, "--route", in + "=" + s.route,
		"--predictions-topic", out, "--dead-letter-topic", dlq, "--batch-max", strconv.Itoa(s.batch), "--batch-wait", s.wait,
		"--metrics-addr", "", "--log-level", "warn", "--instance-id", "bench"}
	if cfg.ORTLib != "" {
		args = append(args, "--ort-lib", cfg.ORTLib)
	}
	cmd := exec.CommandContext(ctx, cfg.Triage, args...)
	cmd.Stderr = cfg.Stderr
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start consumer: %w", err)
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
		return r, err
	}
	// Steady state: from the first to the last prediction, so model loading
	// and the group join do not count.
	r.Rate = float64(n-1) / last.Sub(first).Seconds()

	sent := map[string]time.Time{}
	var smu sync.Mutex
	tick := time.NewTicker(time.Second / time.Duration(max(cfg.LatencyRate, 1)))
	for i := range latN {
		<-tick.C
		send("l"+strconv.Itoa(i), texts[(i*7)%len(texts)], sent, &smu)
	}
	tick.Stop()
	if err := cl.Flush(ctx); err != nil {
		return r, fmt.Errorf("latency produce: %w", err)
	}
	if _, _, err := waitAll("l", latN); err != nil {
		return r, err
	}
	var lat []float64
	mu.Lock()
	for id, t0 := range sent {
		lat = append(lat, float64(arrived[id].Sub(t0).Microseconds())/1000)
	}
	mu.Unlock()
	r.P50, r.P99 = percentiles(lat)
	r.PeakRSSMB = peakRSSMB(cmd.Process.Pid)
	return r, nil
}

// peakRSSMB reads VmHWM (peak resident set) of a live process; 0 where
// /proc is unavailable, since the figure is informational.
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
