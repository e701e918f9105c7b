package retrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/schemas"
	"github.com/triage-ml/triage/snapshot"
	"github.com/triage-ml/triage/trainer"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var words = map[string][]string{
	"billing":  {"invoice", "refund", "charge", "payment", "bill", "price"},
	"shipping": {"parcel", "courier", "tracking", "delivery", "package", "late"},
	"account":  {"password", "login", "email", "profile", "locked", "username"},
}

// writeData writes n synthetic rows; shuffle assigns labels at random.
func writeData(t *testing.T, path string, n int, seed uint64, shuffle bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	labels := []string{"billing", "shipping", "account"}
	var b strings.Builder
	b.WriteString("text,label\n")
	for i := range n {
		l := labels[i%3]
		var ws []string
		for range 5 {
			ws = append(ws, words[l][rng.IntN(6)])
		}
		if shuffle {
			l = labels[rng.IntN(3)]
		}
		fmt.Fprintf(&b, "%s %d,%s\n", strings.Join(ws, " "), i, l)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

type env struct {
	dir    string
	reg    *registry.Local
	runner *Runner
	trains atomic.Int32
}

func newEnv(t *testing.T, train func(context.Context, trainer.Options) (*trainer.Result, error)) *env {
	t.Helper()
	dir := t.TempDir()
	reg, err := registry.OpenLocal(filepath.Join(dir, "registry"), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.OpenStore(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	writeData(t, filepath.Join(dir, "base.csv"), 600, 1, false)
	e := &env{dir: dir, reg: reg}
	if train == nil {
		train = trainer.Train
	}
	e.runner, err = New(Config{Registry: reg, Snapshots: snaps, WorkDir: filepath.Join(dir, "work"),
		Bases: map[string]Base{"support": {Path: filepath.Join(dir, "base.csv"), TextColumn: "text", LabelColumn: "label"}},
		Open:  func(d string) (Model, error) { return inference.Open(d, inference.ModelOptions{}) },
		Train: func(ctx context.Context, o trainer.Options) (*trainer.Result, error) {
			e.trains.Add(1)
			return train(ctx, o)
		},
		Options: trainer.Options{MaxEpochs: 4, LearningRates: []float64{0.2}, L2s: []float64{0}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRetrainGatesAndPromotes(t *testing.T) {
	if _, err := inference.FindORTLibrary(""); err != nil {
		t.Fatalf("ONNX Runtime is needed (make onnxruntime): %v", err)
	}
	e := newEnv(t, nil)
	ctx := context.Background()

	// First run: no champion, so the first version passes and serves.
	res, err := e.runner.Retrain(ctx, "support", TriggerManual, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Promoted || res.Version != "v1" || !res.Gate.Passed || res.Gate.EvalRows == 0 {
		t.Fatalf("first run: %+v", res)
	}
	eval := filepath.Join(e.dir, "work", "evalsets", "support.csv")
	frozen, err := os.ReadFile(eval)
	if err != nil {
		t.Fatalf("no frozen evaluation set: %v", err)
	}

	// Labels shuffled across classes: the challenger is rejected with its
	// reasons, registered but not promoted; the champion stays.
	writeData(t, filepath.Join(e.dir, "base.csv"), 600, 2, true)
	res, err = e.runner.Retrain(ctx, "support", TriggerManual, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Promoted || res.Gate.Passed || len(res.Gate.Reasons) == 0 || res.Gate.Champion != "v1" {
		t.Fatalf("shuffled labels: %+v, want a rejection with reasons against v1", res)
	}
	if cur, _ := e.reg.Resolve(ctx, "support", registry.Champion); cur.Version != "v1" {
		t.Errorf("champion %s after a rejected challenger, want v1", cur.Version)
	}
	v, err := e.reg.Get(ctx, "support", res.Version)
	if err != nil {
		t.Fatal(err)
	}
	if v.Lineage.Gate == nil || v.Lineage.Gate.Passed || v.Lineage.Gate.ChampionMacroF1 <= v.Lineage.Gate.ChallengerMacroF1 ||
		v.Lineage.Snapshot != res.Snapshot || v.Lineage.Parent != "v1" || v.Lineage.Trigger != TriggerManual {
		t.Errorf("rejected version's lineage %+v / gate %+v", v.Lineage, v.Lineage.Gate)
	}
	if again, _ := os.ReadFile(eval); string(again) != string(frozen) {
		t.Error("the evaluation set changed between runs")
	}

	// Clean data again (more of it): passes the gate and is promoted.
	writeData(t, filepath.Join(e.dir, "base.csv"), 900, 3, false)
	res, err = e.runner.Retrain(ctx, "support", TriggerManual, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Promoted || res.Gate.Champion != "v1" {
		t.Fatalf("clean data: %+v, want promoted over v1", res)
	}
	if cur, _ := e.reg.Resolve(ctx, "support", registry.Champion); cur.Version != res.Version {
		t.Errorf("champion %s, want %s", cur.Version, res.Version)
	}
}

func TestGateDecide(t *testing.T) {
	g := Gate{Epsilon: 0.01, Delta: 0.1}
	champ := scoring.Report{N: 100, MacroF1: 0.80, PerClass: map[string]scoring.ClassMetrics{
		"a": {Recall: 0.9, Support: 50}, "b": {Recall: 0.7, Support: 50}, "c": {Recall: 0.5}}}
	for _, c := range []struct {
		name   string
		f1     float64
		recall map[string]float64
		pass   bool
	}{
		{"better", 0.85, map[string]float64{"a": 0.9, "b": 0.8}, true},
		{"within epsilon", 0.795, map[string]float64{"a": 0.9, "b": 0.7}, true},
		{"worse", 0.78, map[string]float64{"a": 0.9, "b": 0.7}, false},
		{"one class collapses", 0.82, map[string]float64{"a": 1.0, "b": 0.55}, false},
	} {
		ch := scoring.Report{N: 100, MacroF1: c.f1, PerClass: map[string]scoring.ClassMetrics{}}
		for k, r := range c.recall {
			ch.PerClass[k] = scoring.ClassMetrics{Recall: r, Support: 50}
		}
		d := g.Decide(&champ, ch)
		if d.Passed != c.pass || (!c.pass && len(d.Reasons) == 0) {
			t.Errorf("%s: %+v, want passed=%v with reasons when refused", c.name, d, c.pass)
		}
		if _, ok := d.RecallDeltas["c"]; ok {
			t.Errorf("%s: class without support compared", c.name)
		}
	}
	if d := g.Decide(nil, scoring.Report{MacroF1: 0.1}); !d.Passed {
		t.Error("a first version (no champion) must pass")
	}
}

// A run in progress makes a second one for the same model return
// ErrRunning, and schedule ticks during a run start nothing.
func TestOneRunPerModel(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	e := newEnv(t, func(ctx context.Context, o trainer.Options) (*trainer.Result, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, errors.New("stopped by the test")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.runner.Retrain(ctx, "support", TriggerManual, "test")
	}()
	<-started
	if _, err := e.runner.Retrain(ctx, "support", TriggerManual, "test"); !errors.Is(err, ErrRunning) {
		t.Errorf("second run: %v, want ErrRunning", err)
	}

	// Every second a tick; the first run still holds the model.
	done := make(chan error, 1)
	go func() { done <- e.runner.Run(ctx, []Policy{{Model: "support", Cron: "* * * * * *"}}, 0) }()
	time.Sleep(2500 * time.Millisecond)
	if n := e.trains.Load(); n != 1 {
		t.Errorf("%d trainings started while one run was going, want 1", n)
	}
	close(release)
	wg.Wait()
	// Now a tick starts a run.
	deadline := time.Now().Add(5 * time.Second)
	for e.trains.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no scheduled run after the first one ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{{Model: "m", Cron: "not a schedule"}, {Model: "m", Threshold: -1}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	for _, p := range []Policy{{Model: "m", Cron: "@weekly"}, {Model: "m", Cron: "0 3 * * 1"}, {Model: "m", Cron: "*/10 * * * * *", Threshold: 100}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v refused: %v", p, err)
		}
	}
}

// Feedback a run refuses (invalid JSON, empty text) goes to the dead-letter
// topic with its reason and never into the snapshot; valid labels do.
func TestRetrainDeadLettersRefusedFeedback(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "fb", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("fb"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range []*kgo.Record{
		{Key: []byte("ok-1"), Value: []byte(`{"id":"ok-1","text":"where is my parcel courier","label":"shipping","model":"support"}`)},
		{Key: []byte("bad-1"), Value: []byte(`not json`)},
		{Key: []byte("bad-2"), Value: []byte(`{"id":"bad-2","text":"   ","label":"billing","model":"support"}`)},
	} {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, nil)
	e.runner.cfg.Feedback = &snapshot.FeedbackSource{Brokers: c.ListenAddrs(), Topic: "fb"}
	e.runner.cfg.DeadLetterTopic = "dlq"
	res, err := e.runner.Retrain(ctx, "support", TriggerManual, "test")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := e.runner.cfg.Snapshots.Get("support", res.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if n := snap.Manifest.OriginCounts[snapshot.OriginFeedback]; n != 1 {
		t.Errorf("snapshot holds %d feedback rows, want the 1 valid one", n)
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	reasons := map[string]string{}
	for len(reasons) < 2 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var d schemas.DeadLetter
			if json.Unmarshal(r.Value, &d) == nil {
				reasons[string(r.Key)] = d.Reason.Code
			}
		})
	}
	if reasons["bad-1"] != schemas.ReasonInvalidJSON || reasons["bad-2"] != schemas.ReasonEmptyText {
		t.Errorf("dead letters %v, want bad-1 invalid_json and bad-2 empty_text", reasons)
	}
}

// TestEvalSetGrowsOnlyWithMarkedLabels: the evaluation set is frozen on
// the first run and afterwards grows with labels marked for evaluation
// only; those never reach training.
func TestEvalSetGrowsOnlyWithMarkedLabels(t *testing.T) {
	r := &Runner{cfg: Config{WorkDir: t.TempDir(), EvalFraction: 0.2, Seed: 3}, log: slog.New(slog.DiscardHandler)}
	var rows snapshot.Rows
	for i := range 50 {
		rows = append(rows, snapshot.Row{ID: fmt.Sprint("feedback:", i), Text: fmt.Sprintf("text number %d", i),
			Label: []string{"a", "b"}[i%2], Origin: snapshot.OriginFeedback})
	}
	first, sum1, err := r.evalSet("m", snapshot.Snapshot{Rows: rows}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 10 {
		t.Fatalf("first evaluation set has %d rows, want 10 (20%% of 50)", len(first))
	}
	// More ordinary feedback: the set stays as it was.
	more := append(slices.Clone(rows), snapshot.Row{ID: "feedback:x", Text: "an ordinary new label", Label: "a", Origin: snapshot.OriginFeedback})
	again, sum2, err := r.evalSet("m", snapshot.Snapshot{Rows: more}, true)
	if err != nil || len(again) != 10 || sum2 != sum1 {
		t.Fatalf("after ordinary feedback: %d rows, sum %s vs %s, err %v; want unchanged", len(again), sum2, sum1, err)
	}
	// Labels marked for evaluation join it (once), and leave training.
	marked := append(more, snapshot.Row{ID: "feedback:e1", Text: "held out one", Label: "b", Origin: snapshot.OriginEval},
		snapshot.Row{ID: "feedback:e2", Text: "held out two", Label: "a", Origin: snapshot.OriginEval})
	grown, sum3, err := r.evalSet("m", snapshot.Snapshot{Rows: marked}, true)
	if err != nil || len(grown) != 12 || sum3 == sum1 {
		t.Fatalf("after marked labels: %d rows (sum changed: %v), err %v; want 12", len(grown), sum3 != sum1, err)
	}
	for i, ex := range first {
		if grown[i].Text != ex.Text || grown[i].Label != ex.Label {
			t.Errorf("frozen row %d changed when the set grew: %+v vs %+v", i, grown[i], ex)
		}
	}
	for _, ex := range withoutTexts(marked, grown) {
		if strings.HasPrefix(ex.Text, "held out") {
			t.Errorf("%q marked for evaluation is in the training rows", ex.Text)
		}
	}
	if g, _, _ := r.evalSet("m", snapshot.Snapshot{Rows: marked}, true); len(g) != 12 {
		t.Errorf("a rerun added the marked labels again: %d rows", len(g))
	}
}

// TestRetrainWithTuning: a run that tunes (trainer.TuneTrain) registers a
// bundle whose hyper-parameters came from the search, refitted.
func TestRetrainWithTuning(t *testing.T) {
	e := newEnv(t, trainer.TuneTrain(8*time.Second))
	res, err := e.runner.Retrain(context.Background(), "support", TriggerManual, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Promoted || e.trains.Load() != 1 {
		t.Fatalf("tuned run: %+v (%d trainings)", res, e.trains.Load())
	}
	v, err := e.reg.Get(context.Background(), "support", res.Version)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Load(v.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Manifest.HyperParams["refit"] != "train+validation" || m.Manifest.HyperParams["search"] == nil || len(m.Manifest.Metrics.Search) < 2 {
		t.Errorf("registered bundle was not tuned: hyper-parameters %v, %d trials", m.Manifest.HyperParams, len(m.Manifest.Metrics.Search))
	}
}
