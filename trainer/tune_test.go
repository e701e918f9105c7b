package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/bundle"
)

// noisyCorpus writes rows texts over 4 labels whose vocabularies overlap
// pairwise and drown in shared filler, with 10% of labels flipped: a linear
// model separates them well but not perfectly, so settings differ.
func noisyCorpus(t *testing.T, rows int) string {
	t.Helper()
	topics := [][]string{
		{"invoice", "charge", "refund", "payment", "card", "fee"},
		{"card", "fee", "parcel", "delivery", "courier", "tracking"},
		{"tracking", "courier", "password", "login", "locked", "reset"},
		{"reset", "login", "invoice", "charge", "cancel", "close"},
	}
	labels := []string{"account", "billing", "closing", "shipping"}
	filler := []string{"please", "help", "my", "the", "is", "not", "today", "why", "hello", "again", "still", "can", "you"}
	rng := rand.New(rand.NewPCG(7, 8))
	var b strings.Builder
	b.WriteString("text,label\n")
	for i := range rows {
		k := i % len(labels)
		var ws []string
		for range 8 {
			if rng.IntN(10) < 3 {
				ws = append(ws, topics[k][rng.IntN(len(topics[k]))])
			} else {
				ws = append(ws, filler[rng.IntN(len(filler))])
			}
		}
		label := labels[k]
		if rng.IntN(10) == 0 {
			label = labels[rng.IntN(len(labels))]
		}
		fmt.Fprintf(&b, "%s,%s\n", strings.Join(ws, " "), label)
	}
	p := filepath.Join(t.TempDir(), "noisy.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// logRecords decodes the JSON log lines Tune wrote.
func logRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestTuneSearchPruneRefit(t *testing.T) {
	data := noisyCorpus(t, 2000)
	out := filepath.Join(t.TempDir(), "tuned")
	var logs bytes.Buffer
	res, err := Tune(context.Background(), TuneOptions{DataPath: data, OutDir: out, Seed: 5, Trials: 27, MaxEpochs: 9,
		Workers: 2, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}

	// The search itself (not just the defaults' grid, which the choice
	// also considers) finds a setting at least as good as the defaults.
	var bestSearch TuneTrial
	for _, tr := range res.Trials {
		if tr.Source == SourceSearch && (bestSearch.Source == "" || better(trialCandidate(tr), trialCandidate(bestSearch))) {
			bestSearch = tr
		}
	}
	t.Logf("defaults %.3f, best search trial %.3f (%+v), chosen %s %.3f; holdout %+v",
		res.Defaults.ValAccuracy, bestSearch.ValAccuracy, bestSearch.Params, res.Best.Source, res.Best.ValAccuracy, res.Holdout)
	if res.Defaults.ValAccuracy >= 0.99 || res.Defaults.ValAccuracy < 0.4 {
		t.Fatalf("defaults' val accuracy %.3f: the corpus should be learnable but not trivial", res.Defaults.ValAccuracy)
	}
	if bestSearch.ValAccuracy < res.Defaults.ValAccuracy {
		t.Errorf("best search trial %.4f < defaults %.4f", bestSearch.ValAccuracy, res.Defaults.ValAccuracy)
	}
	if better(trialCandidate(res.Defaults), trialCandidate(res.Best)) {
		t.Errorf("chosen %+v is worse than the defaults %+v", res.Best, res.Defaults)
	}

	// Rungs at 1, 3 and 9 epochs, eta 3: brackets of 9 trials from rung 0
	// (3 promoted, then 1), 5 from rung 1 (1 promoted) and 3 from rung 2,
	// then 9 from rung 0 again and the last trial from rung 1.
	if res.SearchTrials != 27 || res.StoppedByBudget != 0 {
		t.Errorf("search trials %d, stopped by budget %d; want 27, 0", res.SearchTrials, res.StoppedByBudget)
	}
	perRung := map[int]int{}
	var brackets []int
	for _, tr := range res.Trials {
		if tr.Source != SourceSearch {
			continue
		}
		perRung[tr.Rung]++
		if tr.Bracket == len(brackets) {
			brackets = append(brackets, 0)
		}
		brackets[tr.Bracket]++
		switch tr.Status {
		case TrialPruned:
			if tr.Rung == 2 {
				t.Errorf("trial %d pruned at the top rung", tr.Index)
			}
			if !tr.EarlyStopped && tr.Epochs != []int{1, 3, 9}[tr.Rung] {
				t.Errorf("trial %d pruned at rung %d after %d epochs", tr.Index, tr.Rung, tr.Epochs)
			}
		case TrialCompleted:
			if tr.Rung != 2 {
				t.Errorf("trial %d completed at rung %d", tr.Index, tr.Rung)
			}
		default:
			t.Errorf("trial %d status %q", tr.Index, tr.Status)
		}
	}
	if !reflect.DeepEqual(brackets, []int{9, 5, 3, 9, 1}) || perRung[0] != 12 || perRung[1] != 8 || perRung[2] != 7 || res.Pruned != 20 {
		t.Errorf("trials per bracket %v, stopping per rung %v, pruned %d; want [9 5 3 9 1], 12/8/7 and 20", brackets, perRung, res.Pruned)
	}
	// A bracket's trials come in groups of 3 sharing a featuriser setting:
	// 3 + 2 + 1 + 3 + 1 settings.
	if res.Featurisations != 10 {
		t.Errorf("featurisations %d, want 10", res.Featurisations)
	}
	if res.PeakWorkers != 2 {
		t.Errorf("peak parallel trials %d, want 2", res.PeakWorkers)
	}
	var rungLogs int
	for _, rec := range logRecords(t, &logs) {
		if rec["msg"] == "rung done" {
			rungLogs++
		}
	}
	if rungLogs != 6 {
		t.Errorf("%d \"rung done\" log records, want 6 (rungs 0 and 1 of the brackets from rung 0, rung 1 of those from rung 1)", rungLogs)
	}

	// The refit bundle loads and carries the chosen setting and every trial.
	bd, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	m := bd.Manifest
	if len(m.Metrics.Search) != len(res.Trials) || len(res.Trials) != 27+4 {
		t.Fatalf("manifest has %d trials, result %d; want 27 search + 4 defaults", len(m.Metrics.Search), len(res.Trials))
	}
	for i, tr := range m.Metrics.Search {
		for _, k := range []string{"source", "status", "pruned", "loss", "learning_rate", "l2", "word_ngram_max", "hash_bits"} {
			if _, ok := tr.Params[k]; !ok {
				t.Errorf("trial %d params lack %q: %v", i, k, tr.Params)
			}
		}
		if tr.ValAccuracy != res.Trials[i].ValAccuracy || tr.BestEpoch != res.Trials[i].BestEpoch {
			t.Errorf("manifest trial %d %+v != result %+v", i, tr, res.Trials[i])
		}
	}
	hp := m.HyperParams
	if hp["loss"] != res.Best.Params.Loss || hp["learning_rate"] != res.Best.Params.LearningRate ||
		hp["epochs"] != float64(res.Best.BestEpoch) || hp["refit"] != "train+validation" || hp["featurizer"] == nil {
		t.Errorf("hyper_params %v do not match the chosen trial %+v", hp, res.Best)
	}
	if m.Featurizer != res.Best.Params.Featurizer {
		t.Errorf("bundle featurizer %+v, chosen %+v", m.Featurizer, res.Best.Params.Featurizer)
	}
	// Its validation split is the hold-out slice, recorded so `triage eval
	// --split validation` can recompute it.
	if m.Training.ValRows != res.Holdout.N || m.Training.ValFraction != 0.1 || m.Metrics.Validation.Accuracy != res.Holdout.Refit.Accuracy ||
		m.Training.TrainRows+m.Training.ValRows != 2000 {
		t.Errorf("training %+v validation %+v vs holdout %+v", m.Training, m.Metrics.Validation, res.Holdout)
	}
	if res.Holdout.N != 200 || res.Holdout.Refit.Accuracy == 0 || res.Holdout.TrainOnly.Accuracy == 0 || res.Holdout.Defaults.Accuracy == 0 {
		t.Errorf("holdout %+v", res.Holdout)
	}
}

// The same seed and trial count give the same trials and choice, whatever
// the number of workers.
func TestTuneReproducible(t *testing.T) {
	data := noisyCorpus(t, 300)
	run := func(workers int) TuneResult {
		res, err := Tune(context.Background(), TuneOptions{DataPath: data, OutDir: filepath.Join(t.TempDir(), "m"),
			Seed: 11, Trials: 14, MaxEpochs: 9, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := run(1), run(2)
	if !reflect.DeepEqual(a.Trials, b.Trials) || !reflect.DeepEqual(a.Best, b.Best) || a.Holdout != b.Holdout {
		t.Errorf("runs differ:\n%+v\n%+v", a.Trials, b.Trials)
	}
	if a.SearchTrials != 14 || a.PeakWorkers != 1 || b.PeakWorkers != 2 {
		t.Errorf("trials %d, peak workers %d and %d", a.SearchTrials, a.PeakWorkers, b.PeakWorkers)
	}
	// 14 trials: a bracket of 9 (rungs 1, 3, 9) and one of 5.
	var brackets [2]int
	for _, tr := range a.Trials {
		if tr.Source == SourceSearch {
			brackets[tr.Bracket]++
		}
	}
	if brackets != [2]int{9, 5} {
		t.Errorf("trials per bracket %v, want [9 5]", brackets)
	}
}

// With no trial cap the search runs until the budget, stops what is
// running, and still writes a bundle from what it has.
func TestTuneTimeBudget(t *testing.T) {
	data := noisyCorpus(t, 300)
	budget := 2 * time.Second
	start := time.Now()
	res, err := Tune(context.Background(), TuneOptions{DataPath: data, OutDir: filepath.Join(t.TempDir(), "m"),
		Seed: 1, Budget: budget, MaxEpochs: 200, Patience: 200})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("%d trials, %d pruned, %d stopped by budget in %v (search %.2fs)", res.SearchTrials, res.Pruned, res.StoppedByBudget, elapsed, res.SearchSeconds)
	// The refit of at most 200 epochs on 300 short texts comes on top.
	if elapsed > budget+5*time.Second {
		t.Errorf("run took %v with a %v budget", elapsed, budget)
	}
	if res.SearchTrials == 0 || res.StoppedByBudget == 0 {
		t.Errorf("search trials %d, stopped by budget %d: want some of each", res.SearchTrials, res.StoppedByBudget)
	}
	for _, tr := range res.Trials {
		if tr.Status == TrialBudget && tr.Epochs == 0 {
			t.Errorf("trial %d recorded without a trained epoch", tr.Index)
		}
	}
	if _, err := bundle.Load(res.Dir); err != nil {
		t.Fatal(err)
	}
}

func TestTuneBudgetTooShortForDefaults(t *testing.T) {
	data := noisyCorpus(t, 2000)
	_, err := Tune(context.Background(), TuneOptions{DataPath: data, OutDir: filepath.Join(t.TempDir(), "m"), Budget: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "--budget") {
		t.Fatalf("err = %v, want one about --budget", err)
	}
}

func TestTuneOptionsValidate(t *testing.T) {
	o := TuneOptions{Trials: -1, Budget: -time.Second, HoldoutFraction: 0.7, Eta: 1}
	err := o.Validate()
	for _, want := range []string{"--data", "--out", "--trials", "--budget", "--holdout-fraction", "--eta"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %s", err, want)
		}
	}
	o = TuneOptions{DataPath: "x.csv", OutDir: "/tmp/m"}
	if err := o.Validate(); err != nil || o.Trials != 81 || o.MaxEpochs != 27 || o.Eta != 3 || o.HoldoutFraction != 0.1 {
		t.Errorf("defaults: %v %+v", err, o)
	}
	o = TuneOptions{DataPath: "x.csv", OutDir: "/tmp/m", Budget: time.Minute}
	if err := o.Validate(); err != nil || o.Trials != 0 {
		t.Errorf("with a budget the trials are uncapped: %v %+v", err, o)
	}
}

// Hyperband's brackets for rungs 1, 3, 9, 27 (eta 3): the most aggressive
// starts 27 trials at 1 epoch, the last runs 4 to the end.
func TestBracketPlan(t *testing.T) {
	var got [][2]int
	for i := range 5 {
		first, n := bracketPlan(i, 4, 3)
		got = append(got, [2]int{first, n})
	}
	if want := [][2]int{{0, 27}, {1, 12}, {2, 6}, {3, 4}, {0, 27}}; !reflect.DeepEqual(got, want) {
		t.Errorf("brackets %v, want %v", got, want)
	}
}

func TestRungEpochs(t *testing.T) {
	for _, tc := range []struct {
		max, eta int
		want     []int
	}{{27, 3, []int{1, 3, 9, 27}}, {20, 3, []int{1, 3, 9, 20}}, {9, 3, []int{1, 3, 9}}, {1, 3, []int{1}}, {8, 2, []int{1, 2, 4, 8}}} {
		if got := rungEpochs(tc.max, tc.eta); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("rungEpochs(%d, %d) = %v, want %v", tc.max, tc.eta, got, tc.want)
		}
	}
}

func TestSampleParams(t *testing.T) {
	seen := map[featKey]bool{}
	draw := func(i int) TuneParams { return sampleParams(9, i-i%featGroup, i, true, true) }
	for i := range 60 {
		p := draw(i)
		if p != draw(i) {
			t.Fatal("sampling is not a function of seed and indices")
		}
		if err := p.Featurizer.Validate(); err != nil {
			t.Errorf("trial %d: %v", i, err)
		}
		c := p.Featurizer
		if c.WordNgramMax < 1 || c.WordNgramMax > 3 || c.CharNgramMin > 2 || c.CharNgramMax < 3 || c.CharNgramMax > 5 ||
			c.HashBits < 18 || c.HashBits > 24 || p.LearningRate < 0.01 || p.LearningRate > 1 || p.L2 < 0 || p.L2 > 1e-3 ||
			p.EncoderScale < 0.3 || p.EncoderScale > 10 {
			t.Errorf("trial %d out of the space: %+v", i, p)
		}
		if prev := draw(i - 1); i%featGroup > 0 && (featKey{p.Featurizer, p.EncoderScale} != featKey{prev.Featurizer, prev.EncoderScale} || p.LearningRate == prev.LearningRate) {
			t.Errorf("trial %d does not share its group's featuriser setting, or shares its optimiser's", i)
		}
		seen[featKey{p.Featurizer, p.EncoderScale}] = true
	}
	if len(seen) != 60/featGroup {
		t.Errorf("%d distinct featuriser settings in 60 trials, want %d", len(seen), 60/featGroup)
	}
}

// slots never lets more than its size through and serves the lowest key
// first.
func TestSlotsPriority(t *testing.T) {
	s := newSlots(1)
	ctx := context.Background()
	if err := s.acquire(ctx, 100); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for _, k := range []int{5, 3, 9, 1} {
		wg.Go(func() {
			if err := s.acquire(ctx, k); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, k)
			mu.Unlock()
			s.release()
		})
	}
	// A waiter that gives up leaves the queue without taking a slot.
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error)
	go func() { gaveUp <- s.acquire(cctx, 0) }()
	for {
		s.mu.Lock()
		n := len(s.waiting)
		s.mu.Unlock()
		if n == 5 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; err == nil {
		t.Fatal("cancelled acquire succeeded")
	}
	s.release()
	wg.Wait()
	if !reflect.DeepEqual(order, []int{1, 3, 5, 9}) || s.peak != 1 || s.free != 1 {
		t.Errorf("order %v peak %d free %d", order, s.peak, s.free)
	}
}
