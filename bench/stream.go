package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	Brokers     []string
	ModelDir    string // model bundle for the model runs
	Data        string // file whose texts are sent (and the Python model's training data)
	TextColumn  string
	LabelColumn string // for training the Python baseline's model
	Messages    int    // messages for the throughput phase
	Partitions  int32  // of the input topic
	Repeat      int    // repetitions of every run, interleaved; < 1 means 1

	LatencyMessages int // messages for the latency phase
	LatencyRate     int // messages/s sent in the latency phase

	// Triage is the triage binary whose `consumer` subcommand is measured:
	// a real process, so its peak RSS is its own.
	Triage string
	// Before, if set, is an earlier triage binary whose micro-batched
	// consumer runs as well (b0): before and after in the same run.
	Before string
	ORTLib string    // passed to the consumer processes
	Stderr io.Writer // the consumer processes' stderr

	// Python is the interpreter of the Python baseline (confluent-kafka +
	// scikit-learn); empty skips the Python runs. PythonScripts is the folder
	// holding python_consumer.py and train_sklearn.py; PythonModel is the
	// pickle train_sklearn.py writes (cached) and the baseline serves.
	Python        string
	PythonScripts string
	PythonModel   string

	// ProfileDir, if set, gets one Go CPU profile per Triage consumer
	// process: <run id>-<rep>.pprof.
	ProfileDir string

	// OnStart, if set, is called once the texts are loaded, before the
	// first run.
	OnStart func()
	// OnRun, if set, is called as each repetition of a run finishes.
	OnRun func(StreamRun)
}

// StreamRun is one repetition of one consumer configuration.
type StreamRun struct {
	ID, Name string
	Rep      int // 1-based
	Procs    int // consumer processes
	Rate     float64
	// CPUPerMsg is the consumer processes' utime+stime (all threads, summed
	// over processes) per message in µs, over the same steady-state window
	// as Rate.
	CPUPerMsg float64
	P50, P99  float64 // produce → prediction visible, ms
	PeakRSSMB float64 // VmHWM, summed over the run's processes
	Profile   string  // CPU profile written, if any
}

// Stat is a median with its range over repetitions.
type Stat struct{ Median, Min, Max float64 }

func statOf(xs []float64) Stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return Stat{}
	}
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// StreamSummary is one configuration over its repetitions.
type StreamSummary struct {
	ID, Name string
	Procs    int
	Rate     Stat
	CPU      Stat // µs per message
	P50, P99 Stat
	RSS      Stat // MB
}

// Ratio compares two runs: Median is of the medians, Min and Max the
// extremes the ranges allow.
type Ratio struct {
	Name string
	Stat
	Goal string // e.g. "≤ 0.33"; empty for information only
	Met  bool   // the median meets Goal
}

// StreamResult holds every repetition, the per-run summaries in setup order
// and the ratios the streaming acceptance asks for.
type StreamResult struct {
	Runs    []StreamRun
	Summary []StreamSummary
	Ratios  []Ratio
}

// Run ids, also the profile file names.
const (
	runPassthrough = "passthrough"
	runBatched     = "batched"
	runBefore      = "batched-before"
	runBatch1      = "batch1"
	runPython1     = "python1"
	runPython2     = "python2"
)

// streamSetup is the consumer configuration of one run.
type streamSetup struct {
	id, name    string
	python      bool
	procs       int
	route, wait string
	batch       int
	bin         string // the triage binary; "" = cfg.Triage
}

// Stream measures end-to-end msgs/s, CPU per message, produce→prediction
// latency and peak RSS through real consumer processes: `triage consumer`
// passthrough, micro-batched model and batch size 1, then the Python
// baseline with one and two processes; each on fresh topics, repeated
// cfg.Repeat times (interleaved, so load drift on the machine hits every
// run alike).
func Stream(ctx context.Context, cfg StreamConfig) (StreamResult, error) {
	texts, err := loadTexts(cfg.Data, cfg.TextColumn)
	if err != nil {
		return StreamResult{}, err
	}
	setups := []streamSetup{
		{id: runPassthrough, name: "a) passthrough, no model", route: consumer.PassthroughRoute, batch: 256, wait: "5ms", procs: 1},
		{id: runBatched, name: "b) linear model, micro-batched (256, 5ms)", route: cfg.ModelDir, batch: 256, wait: "5ms", procs: 1},
		{id: runBatch1, name: "c) linear model, batch size 1", route: cfg.ModelDir, batch: 1, wait: "0s", procs: 1},
	}
	if cfg.Before != "" {
		setups = append(setups, streamSetup{id: runBefore, name: "b0) linear model, micro-batched (256, 5ms), before: " + filepath.Base(cfg.Before),
			route: cfg.ModelDir, batch: 256, wait: "5ms", procs: 1, bin: cfg.Before})
	}
	if cfg.Python != "" {
		if cfg.Partitions < 2 {
			return StreamResult{}, fmt.Errorf("bench stream: the 2-process Python run needs an input topic of >= 2 partitions, have %d", cfg.Partitions)
		}
		if err := trainPython(ctx, cfg); err != nil {
			return StreamResult{}, err
		}
		setups = append(setups,
			streamSetup{id: runPython1, name: "d) Python sklearn, 1 process (256, 5ms)", python: true, procs: 1, batch: 256, wait: "0.005"},
			streamSetup{id: runPython2, name: "e) Python sklearn, 2 processes (256, 5ms)", python: true, procs: 2, batch: 256, wait: "0.005"})
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return StreamResult{}, fmt.Errorf("bench stream: --profile-dir: %w", err)
		}
	}
	if cfg.OnStart != nil {
		cfg.OnStart()
	}
	var res StreamResult
	byID := map[string][]StreamRun{}
	for rep := 1; rep <= max(cfg.Repeat, 1); rep++ {
		for _, s := range setups {
			r, err := measureStream(ctx, cfg, s, texts, rep)
			if err != nil {
				return res, fmt.Errorf("bench stream %s (rep %d): %w", s.name, rep, err)
			}
			res.Runs = append(res.Runs, r)
			byID[s.id] = append(byID[s.id], r)
			if cfg.OnRun != nil {
				cfg.OnRun(r)
			}
		}
	}
	for _, s := range setups {
		res.Summary = append(res.Summary, summarize(s, byID[s.id]))
	}
	res.Ratios = streamRatios(res.Summary)
	return res, nil
}

func summarize(s streamSetup, runs []StreamRun) StreamSummary {
	pick := func(f func(StreamRun) float64) Stat {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return statOf(xs)
	}
	return StreamSummary{ID: s.id, Name: s.name, Procs: s.procs,
		Rate: pick(func(r StreamRun) float64 { return r.Rate }),
		CPU:  pick(func(r StreamRun) float64 { return r.CPUPerMsg }),
		P50:  pick(func(r StreamRun) float64 { return r.P50 }),
		P99:  pick(func(r StreamRun) float64 { return r.P99 }),
		RSS:  pick(func(r StreamRun) float64 { return r.PeakRSSMB }),
	}
}

// streamRatios are the acceptance's comparisons of the micro-batched model
// run (b) with the others present.
func streamRatios(sum []StreamSummary) []Ratio {
	get := func(id string) *StreamSummary {
		for i := range sum {
			if sum[i].ID == id {
				return &sum[i]
			}
		}
		return nil
	}
	b := get(runBatched)
	if b == nil {
		return nil
	}
	ratio := func(name string, num, den Stat, goal string, met func(float64) bool) Ratio {
		r := Ratio{Name: name, Goal: goal, Stat: Stat{Median: num.Median / den.Median, Min: num.Min / den.Max, Max: num.Max / den.Min}}
		if met != nil {
			r.Met = met(r.Median)
		}
		return r
	}
	var out []Ratio
	if p := get(runPython1); p != nil {
		out = append(out, ratio("CPU/msg (b) ÷ Python×1", b.CPU, p.CPU, "≤ 0.33", func(x float64) bool { return x <= 1.0/3 }))
		out = append(out, ratio("msgs/s (b) ÷ Python×1", b.Rate, p.Rate, "≥ 3", func(x float64) bool { return x >= 3 }))
	}
	if p := get(runPython2); p != nil {
		out = append(out, ratio("CPU/msg (b) ÷ Python×2", b.CPU, p.CPU, "", nil))
		out = append(out, ratio("msgs/s (b) ÷ Python×2", b.Rate, p.Rate, "≥ 1.5", func(x float64) bool { return x >= 1.5 }))
	}
	if a := get(runPassthrough); a != nil {
		out = append(out, ratio("msgs/s (b) ÷ passthrough (a)", b.Rate, a.Rate, "≥ 0.8", func(x float64) bool { return x >= 0.8 }))
	}
	if c := get(runBatch1); c != nil {
		out = append(out, ratio("msgs/s (b) ÷ batch size 1 (c)", b.Rate, c.Rate, "", nil))
	}
	if b0 := get(runBefore); b0 != nil {
		out = append(out, ratio("CPU/msg (b) ÷ before (b0)", b.CPU, b0.CPU, "", nil))
		out = append(out, ratio("msgs/s (b) ÷ before (b0)", b.Rate, b0.Rate, "", nil))
	}
	return out
}

// trainPython fits (or finds cached) the baseline's scikit-learn pipeline
// on the same data, so its setup cost stays out of the runs.
func trainPython(ctx context.Context, cfg StreamConfig) error {
	cmd := exec.CommandContext(ctx, cfg.Python, filepath.Join(cfg.PythonScripts, "train_sklearn.py"),
		"--data", cfg.Data, "--text-column", cfg.TextColumn, "--label-column", cfg.LabelColumn, "--out", cfg.PythonModel)
	cmd.Stdout, cmd.Stderr = io.Discard, cfg.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench stream: train the Python baseline (%s): %w", cmd, err)
	}
	return nil
}

// child is one consumer process; done closes when it exits.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startChild(name string, args, env []string, stderr io.Writer) (*child, error) {
	// Not CommandContext: cancellation must SIGTERM (see stop) so that
	// profiles are flushed, not SIGKILL.
	cmd := exec.Command(name, args...)
	cmd.Env, cmd.Stderr = env, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop asks the process to finish (a Triage consumer writes its CPU
// profile on SIGTERM) and kills it after 30 s.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// childEnv is this process's environment without the CPU-profile
// variables: inherited, every consumer would write the bench's own profile
// file at once. --profile-dir gives each its own file instead.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TRIAGE_CPU_PROFILE=") || strings.HasPrefix(kv, "TRIAGE_CPUPROFILE=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// measureStream pre-produces cfg.Messages, starts the consumer(s) and times
// them through, then sends cfg.LatencyMessages at cfg.LatencyRate and times
// each one's prediction.
func measureStream(ctx context.Context, cfg StreamConfig, s streamSetup, texts []string, rep int) (StreamRun, error) {
	r := StreamRun{ID: s.id, Name: s.name, Rep: rep, Procs: s.procs}
	brokers, n, latN := cfg.Brokers, cfg.Messages, cfg.LatencyMessages
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(100000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return r, fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out, dlq, group := "bench-in-"+suffix, "bench-out-"+suffix, "bench-dlq-"+suffix, "bench-"+suffix
	if _, err := adm.CreateTopics(ctx, cfg.Partitions, 1, nil, in, out, dlq); err != nil {
		return r, fmt.Errorf("create topics: %w", err)
	}
	defer func() {
		// Keep the broker's log small over many runs; best effort.
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		adm.DeleteTopics(dctx, in, out, dlq)
	}()
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

	var name string
	var args []string
	if s.python {
		name = cfg.Python
		args = []string{filepath.Join(cfg.PythonScripts, "python_consumer.py"), "--brokers", strings.Join(brokers, ","),
			"--group", group, "--input", in, "--output", out, "--model", cfg.PythonModel,
			"--batch-max", strconv.Itoa(s.batch), "--batch-wait", s.wait, "--start-paused"}
	} else {
		name = cmp.Or(s.bin, cfg.Triage)
		args = []string{"consumer", "--brokers", strings.Join(brokers, ","), "--group", group, "--route", in + "=" + s.route,
			"--predictions-topic", out, "--dead-letter-topic", dlq, "--batch-max", strconv.Itoa(s.batch), "--batch-wait", s.wait,
			"--metrics-addr", "", "--log-level", "warn", "--instance-id", "bench"}
		if cfg.ORTLib != "" {
			args = append(args, "--ort-lib", cfg.ORTLib)
		}
		if cfg.ProfileDir != "" {
			r.Profile = filepath.Join(cfg.ProfileDir, fmt.Sprintf("%s-%d.pprof", s.id, rep))
			args = append(args, "--cpu-profile", r.Profile)
		}
	}
	env := childEnv()
	var kids []*child
	defer func() {
		for _, k := range kids {
			k.stop()
		}
	}()
	for range s.procs {
		k, err := startChild(name, args, env, cfg.Stderr)
		if err != nil {
			return r, fmt.Errorf("start consumer: %w", err)
		}
		kids = append(kids, k)
	}
	exited := func() error {
		for _, k := range kids {
			select {
			case <-k.done:
				return fmt.Errorf("consumer exited early: %v", k.err)
			default:
			}
		}
		return nil
	}
	if s.python {
		// All processes join before any consumes: otherwise the first takes
		// every partition and a rebalance lands in the measured window.
		if err := waitGroupStable(ctx, adm, group, s.procs, exited); err != nil {
			return r, err
		}
		for _, k := range kids {
			k.cmd.Process.Signal(syscall.SIGUSR1)
		}
	}
	pids := make([]int, len(kids))
	for i, k := range kids {
		pids[i] = k.cmd.Process.Pid
	}

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
	// waitAll polls every 20 ms until want predictions arrived; onPoll sees
	// each count as it is taken.
	waitAll := func(prefix string, want int, onPoll func(int)) (time.Time, time.Time, error) {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			c, first, last := count(prefix)
			if onPoll != nil {
				onPoll(c)
			}
			if c >= want {
				return first, last, nil
			}
			if err := exited(); err != nil {
				return first, last, err
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
	// CPU over the steady-state window: sampled when the first predictions
	// are seen and when the last is, divided by the messages in between.
	var cpu0, cpu1 float64
	c0, c1 := -1, 0
	first, last, err := waitAll("t", n, func(c int) {
		if c > 0 && c0 < 0 {
			cpu0, c0 = cpuSeconds(pids), c
		}
		if c >= n {
			cpu1, c1 = cpuSeconds(pids), c
		}
	})
	if err != nil {
		return r, err
	}
	// Steady state: from the first to the last prediction, so model loading
	// and the group join do not count.
	r.Rate = float64(n-1) / last.Sub(first).Seconds()
	if c1 > c0 {
		r.CPUPerMsg = (cpu1 - cpu0) / float64(c1-c0) * 1e6
	}

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
	if _, _, err := waitAll("l", latN, nil); err != nil {
		return r, err
	}
	var lat []float64
	mu.Lock()
	for id, t0 := range sent {
		lat = append(lat, float64(arrived[id].Sub(t0).Microseconds())/1000)
	}
	mu.Unlock()
	r.P50, r.P99 = percentiles(lat)
	for _, p := range pids {
		r.PeakRSSMB += PeakRSSMB(p)
	}
	return r, nil
}

// waitGroupStable waits until group is Stable with procs members, each
// assigned at least one partition.
func waitGroupStable(ctx context.Context, adm *kadm.Client, group string, procs int, exited func() error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		gs, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := gs[group]; ok && g.Err == nil && g.State == "Stable" && len(g.Members) == procs {
				assigned := 0
				for _, m := range g.Members {
					if c, ok := m.Assigned.AsConsumer(); ok && len(c.Topics) > 0 && len(c.Topics[0].Partitions) > 0 {
						assigned++
					}
				}
				if assigned == procs {
					return nil
				}
			}
		}
		if err := exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s: %d consumers did not all join within 2 minutes", group, procs)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux ABI Go supports (sysconf would need cgo).
const clockTicks = 100

// cpuSeconds sums utime+stime (all threads) of live processes from
// /proc/PID/stat; 0 for those it cannot read.
func cpuSeconds(pids []int) float64 {
	var ticks float64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		ticks += statTicks(b)
	}
	return ticks / clockTicks
}

// statTicks is utime+stime (fields 14 and 15) of a /proc/PID/stat line;
// fields are counted after the ")" that ends the command name, which may
// itself hold spaces.
func statTicks(stat []byte) float64 {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return u + s
}

// PeakRSSMB reads VmHWM (peak resident set) of a live process; 0 where
// /proc is unavailable, since the figure is informational.
func PeakRSSMB(pid int) float64 {
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
