package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/schemas"
)

var testLabels = []string{"card_arrival", "refund", "exchange_rate", "lost_card"}

// synthetic draws one prediction of a model that is right 90% of the time
// with confidence that tracks it; shifted draws mostly "refund" with low
// confidence and unseen words, as out-of-domain traffic looks.
func synthetic(rng *rand.Rand, shifted bool) (label int, conf, margin float64, oov float64) {
	if shifted {
		return 1, 0.3 + 0.2*rng.Float64(), 0.05, 0.4 + 0.2*rng.Float64()
	}
	label = rng.IntN(len(testLabels))
	conf = 0.7 + 0.3*rng.Float64()
	if rng.Float64() < 0.1 {
		conf = 0.35 + 0.3*rng.Float64()
	}
	return label, conf, conf - 0.2, 0.02 * rng.Float64()
}

func testReference(t *testing.T) *drift.Reference {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	var obs []drift.Observation
	var probs [][]float64
	for range 800 {
		l, c, m, oov := synthetic(rng, false)
		row := make([]float64, len(testLabels))
		for j := range row {
			row[j] = (1 - c) / float64(len(testLabels)-1)
		}
		row[l] = c
		truth := l
		if rng.Float64() > c {
			truth = (l + 1) % len(testLabels)
		}
		obs = append(obs, drift.Observation{Label: l, Confidence: c, Calibrated: c, Margin: m, Tokens: 8 + rng.IntN(5),
			OOVRate: oov, EmbedDist: math.NaN(), True: truth})
		probs = append(probs, row)
	}
	ref, err := drift.BuildReference(testLabels, obs, probs, drift.ReferenceOptions{WindowSize: 100, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

type fakeIndexer struct {
	mu   sync.Mutex
	docs map[string]int
}

func (f *fakeIndexer) Index(kind string, _ time.Time, _ any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[kind]++
}

func (f *fakeIndexer) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.docs[kind]
}

// TestMonitorWindows streams in-distribution predictions, then shifted
// ones, through a kfake broker: the first windows raise nothing, the
// shifted one is a drift event on the drift topic, in the metrics, in the
// report and in the indexer; human labels give the true accuracy.
func TestMonitorWindows(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "preds", "fb", "drift", "support-queries"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ref := testReference(t)
	trng := rand.New(rand.NewPCG(9, 9))
	domain, err := drift.BuildDomainReference(texts(trng, bankWords, 600), 1)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	idx := &fakeIndexer{docs: map[string]int{}}
	m, err := New(Config{Brokers: c.ListenAddrs(), PredictionsTopic: "preds", FeedbackTopic: "fb", DriftTopic: "drift",
		WindowTime: time.Hour, SampleRate: 1, Indexer: idx, Registerer: reg, DomainEvery: 1, InputTopics: []string{"support-queries"},
		References: func(_ context.Context, model, version string) (ModelReference, error) {
			if model != "support" || version != "v1" {
				return ModelReference{}, fmt.Errorf("no such version %s %s", model, version)
			}
			return ModelReference{Drift: ref, Domain: domain}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(2, 2))
	var fb, preds, inputs []*kgo.Record
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range 500 {
		shifted := i >= 400
		l, conf, margin, oov := synthetic(rng, shifted)
		id := fmt.Sprintf("r%d", i)
		truth := testLabels[l]
		if rng.Float64() > conf || shifted {
			truth = testLabels[(l+1)%len(testLabels)]
		}
		vocab := bankWords
		if shifted {
			vocab = movieWords
		}
		in, _ := json.Marshal(schemas.Input{ID: id, Text: texts(trng, vocab, 1)[0]})
		inputs = append(inputs, &kgo.Record{Topic: "support-queries", Key: []byte(id), Value: in})
		f, _ := json.Marshal(schemas.Feedback{ID: id, Text: "x", Label: truth})
		fb = append(fb, &kgo.Record{Topic: "fb", Key: []byte(id), Value: f})
		p := schemas.Prediction{ID: id, Input: schemas.InputRef{Topic: "support-queries", Offset: int64(i)}, Label: testLabels[l],
			Confidence: conf, Scores: []schemas.Score{{Label: testLabels[l], Score: conf}}, Model: schemas.ModelRef{Name: "support", Version: "v1"},
			ClassifiedAt: at.Add(time.Duration(i) * time.Second),
			Signals:      &schemas.Signals{Calibrated: conf, Margin: margin, Tokens: 10, OOVRate: oov}}
		v, _ := json.Marshal(p)
		preds = append(preds, &kgo.Record{Topic: "preds", Value: v, Headers: []kgo.RecordHeader{{Key: "triage-kind", Value: []byte("prediction")}}})
	}
	preds = append(preds, &kgo.Record{Topic: "preds", Value: []byte("{not json")})
	if err := cl.ProduceSync(ctx, append(fb, inputs...)...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // labels first, as they would be for a labelled window

	if err := cl.ProduceSync(ctx, preds...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var rep Report
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep = m.Report("support", 0)
		if len(rep.Streams) == 1 && len(rep.Streams[0].Windows) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %+v: want 5 windows", rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := rep.Streams[0]
	for i, w := range s.Windows {
		t.Logf("window %d: count %d psi %.4f est %.3f true %v conf %.3f oov %.3f domain AUC %v alerts %v",
			i, w.Window.Count, w.LabelPSI, w.EstimatedAccuracy, deref(w.TrueAccuracy), w.Confidence.Mean, w.Input.OOVRate, deref(w.DomainAUC), w.Alerts)
		if w.Window.Count != 100 || w.Window.Kind != "count" || w.Topic != "support-queries" {
			t.Errorf("window %d: %+v", i, w.Window)
		}
		if w.TrueAccuracy == nil || w.Labelled != 100 {
			t.Errorf("window %d: %d labelled, true accuracy %v", i, w.Labelled, w.TrueAccuracy)
		}
		raw, _ := json.Marshal(w)
		if err := schemas.MustValidator(schemas.KindDrift).Validate(raw); err != nil {
			t.Errorf("window %d fails the drift schema: %v", i, err)
		}
	}
	for i, w := range s.Windows {
		if w.DomainAUC == nil {
			t.Errorf("window %d has no domain-classifier AUC", i)
		}
	}
	for i, w := range s.Windows[:4] {
		if w.Drift {
			t.Errorf("in-distribution window %d drifted: %v", i, w.Alerts)
		}
		if d := math.Abs(w.EstimatedAccuracy - *w.TrueAccuracy); d > 0.1 {
			t.Errorf("window %d: estimated %.3f vs true %.3f", i, w.EstimatedAccuracy, *w.TrueAccuracy)
		}
	}
	last := s.Windows[4]
	if !last.Drift || !strings.Contains(strings.Join(last.Alerts, ","), "label_psi") || !strings.Contains(strings.Join(last.Alerts, ","), "domain_auc") {
		t.Errorf("shifted window: drift %v alerts %v, want label_psi and domain_auc among them", last.Drift, last.Alerts)
	}
	if s.DriftEvents != 1 || s.Reference == nil || len(s.Reference.Thresholds) == 0 {
		t.Errorf("drift events %d, reference %+v", s.DriftEvents, s.Reference)
	}
	if got := testutil.ToFloat64(m.metrics.events.WithLabelValues("support", "support-queries")); got != 1 {
		t.Errorf("drift events metric %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.metrics.skipped.WithLabelValues("undecodable")); got != 1 {
		t.Errorf("undecodable records counted %v, want 1", got)
	}
	if idx.count("drift") != 5 || idx.count("predictions") != 500 {
		t.Errorf("indexed %v, want 5 drift windows and 500 predictions", idx.docs)
	}

	// The drift event is on the topic, valid against its schema.
	dc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("drift"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	fs := dc.PollFetches(pctx)
	var events []schemas.DriftWindow
	fs.EachRecord(func(r *kgo.Record) {
		var w schemas.DriftWindow
		if err := schemas.Decode(schemas.KindDrift, r.Value, &w); err != nil {
			t.Errorf("drift event: %v", err)
		}
		if string(r.Key) != "support" {
			t.Errorf("drift event key %q, want the model name", r.Key)
		}
		events = append(events, w)
	})
	if len(events) != 1 || !events[0].Drift || !events[0].Window.End.Equal(last.Window.End) {
		t.Errorf("drift topic holds %+v, want the shifted window only", events)
	}
}

// TestMonitorTimeWindowsAndSwap: a window closes on a new model version
// and on its time limit; small windows report without alarms.
func TestMonitorTimeWindowsAndSwap(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ref := testReference(t)
	s := &stream{key: streamKey{"support", "q"}}
	mr := &modelRef{ref: ref, index: map[string]int{}}
	s.open("v1", mr, now)
	rng := rand.New(rand.NewPCG(3, 3))
	for range 10 {
		l, c, mg, oov := synthetic(rng, true) // shifted, but too few to judge
		s.add(drift.Observation{Label: l, Calibrated: c, Confidence: c, Margin: mg, OOVRate: oov, EmbedDist: math.NaN(), True: -1}, now)
	}
	w := s.close("time", 50)
	if w == nil || w.Drift || len(w.Alerts) != 0 || w.Window.Kind != "time" || w.Window.Count != 10 {
		t.Fatalf("small time window: %+v", w)
	}
	if w.TrueAccuracy != nil || w.Labelled != 0 {
		t.Errorf("unlabelled window has true accuracy %v", w.TrueAccuracy)
	}
	if s.close("time", 50) != nil {
		t.Error("closing an empty stream reported a window")
	}
}

var (
	bankWords  = strings.Fields("my card payment transfer account money refund pending declined atm cash top up balance fee exchange rate pin blocked arrived still why can i how do you the a is not")
	movieWords = strings.Fields("the film movie plot actor director scenes funny boring story characters performance cast script its a is not and of with too much great bad")
)

func texts(rng *rand.Rand, vocab []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		ws := make([]string, 5+rng.IntN(8))
		for j := range ws {
			ws[j] = vocab[rng.IntN(len(vocab))]
		}
		out[i] = strings.Join(ws, " ")
	}
	return out
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
