package inference

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/trainer"
)

// trainedBundle trains a small model on generated support tickets, so the
// parity test exercises a real trained graph, not hand-made weights.
func trainedBundle(t testing.TB) string {
	t.Helper()
	data := ticketsCSV(t)
	out := filepath.Join(filepath.Dir(data), "support")
	if _, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: out, Seed: 1,
		LearningRates: []float64{0.2}, L2s: []float64{0}, MaxEpochs: 6}); err != nil {
		t.Fatal(err)
	}
	return out
}

// ticketsCSV writes 400 generated support tickets of 4 labels.
func ticketsCSV(t testing.TB) string {
	t.Helper()
	words := map[string][]string{
		"card_arrival":  {"card", "arrive", "delivery", "waiting", "post", "weeks"},
		"refund":        {"refund", "money", "back", "returned", "merchant", "pending"},
		"exchange_rate": {"rate", "exchange", "currency", "euro", "dollar", "fee"},
		"lost_card":     {"lost", "stolen", "missing", "block", "freeze", "thief"},
	}
	labels := []string{"card_arrival", "refund", "exchange_rate", "lost_card"}
	filler := []string{"my", "the", "please", "why", "is", "not", "help", "I", "need"}
	rng := rand.New(rand.NewPCG(11, 12))
	var b strings.Builder
	b.WriteString("text,label\n")
	for i := range 400 {
		l := labels[i%len(labels)]
		var ws []string
		for range 7 {
			if rng.IntN(3) > 0 {
				ws = append(ws, words[l][rng.IntN(6)])
			} else {
				ws = append(ws, filler[rng.IntN(len(filler))])
			}
		}
		fmt.Fprintf(&b, "%q,%s\n", strings.Join(ws, " "), l)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "tickets.csv")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestORTMatchesPureGoReference(t *testing.T) {
	dir := trainedBundle(t)
	m, err := Open(dir, ModelOptions{Session: SessionOptions{PoolSize: 1, IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, err := OpenReference(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{
		"my card has not arrived after two weeks", "I want a refund of my money", "what is the euro exchange rate",
		"my card was stolen, block it", "", "😍😍😍", "我的卡丢了", "CARD ARRIVE?!", strings.Repeat("refund ", 3000),
		"\xff\xfe broken bytes card", "unrelated words entirely",
	}
	for _, batch := range []int{1, 3, len(texts)} {
		vs := make([]featurizer.Vector, batch)
		for i := range vs {
			vs[i] = m.Featurizer().Transform(texts[i])
		}
		got, err := m.Probabilities(context.Background(), vs)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Probabilities(vs)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(got) != batch*len(m.Manifest().Labels) {
			t.Fatalf("batch %d: %d vs %d probabilities", batch, len(got), len(want))
		}
		var worst float64
		for i := range got {
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
		}
		if worst > 1e-5 {
			t.Errorf("batch %d: max |ORT - Go| = %g > 1e-5", batch, worst)
		}
	}
	// Over lengthChunk texts: grouped by length into several ORT calls, and
	// the rows must come back in input order.
	var many []featurizer.Vector
	for i := range 150 {
		many = append(many, m.Featurizer().Transform(strings.Repeat(texts[i%4]+" ", 1+i%7)))
	}
	got, err := m.Probabilities(context.Background(), many)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Probabilities(many)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
			t.Fatalf("chunked batch: row %d differs by %g", i/len(m.Manifest().Labels), d)
		}
	}
	preds, err := m.Predict(context.Background(), texts[:4])
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"card_arrival", "refund", "exchange_rate", "lost_card"} {
		p := preds[i]
		if p.Label != want || p.Model.Name != "support" || len(p.Scores) != 4 || p.Scores[0].Score != p.Confidence {
			t.Errorf("%q: %+v", texts[i], p)
		}
		for k := 1; k < len(p.Scores); k++ {
			if p.Scores[k].Score > p.Scores[k-1].Score {
				t.Errorf("scores not sorted: %+v", p.Scores)
			}
		}
	}
	if long, _ := m.Predict(context.Background(), []string{strings.Repeat("refund ", 3000)}); !long[0].Truncated {
		t.Error("text over the window not flagged as truncated")
	}
}

// The pooled packing must lay inputs out exactly as featurizer.Batch does,
// also when a buffer comes back from a longer batch with stale values.
func TestPackedMatchesBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var p packed
	for _, n := range []int{5, 1, 40, 3, 0} {
		vs := make([]featurizer.Vector, n)
		for i := range vs {
			l := rng.IntN(30)
			if i == 0 {
				l = 0 // an empty text pads a whole row
			}
			for range l {
				vs[i].IDs = append(vs[i].IDs, 1+rng.Int64N(1000))
				vs[i].Weights = append(vs[i].Weights, rng.Float32())
			}
		}
		ids, ws, L := featurizer.Batch(vs)
		gotL := p.pad(vs)
		if gotL != L || !slices.Equal(p.ids, ids) || !slices.Equal(p.ws, ws) {
			t.Fatalf("%d texts: pad gave length %d %v %v, Batch %d %v %v", n, gotL, p.ids, p.ws, L, ids, ws)
		}
	}
}

// decode shares one backing array between predictions; appending to one
// prediction's scores must not change the next one's.
func TestDecodeScoresIndependent(t *testing.T) {
	labels := []string{"a", "b", "c", "d"}
	probs := []float32{0.1, 0.4, 0.2, 0.3, 0.25, 0.25, 0.4, 0.1}
	preds := decode(labels, ModelRef{}, 2, make([]Input, 2), probs)
	want := [][]Score{{{"b", 0.4}, {"d", 0.3}}, {{"c", 0.4}, {"a", 0.25}}}
	for i, p := range preds {
		if !slices.Equal(p.Scores, want[i]) || p.Label != want[i][0].Label || p.Confidence != want[i][0].Score {
			t.Fatalf("prediction %d: %+v, want scores %v", i, p, want[i])
		}
	}
	_ = append(preds[0].Scores, Score{"x", 1})
	if !slices.Equal(preds[1].Scores, want[1]) {
		t.Fatalf("append to prediction 0 changed prediction 1: %v", preds[1].Scores)
	}
}

// Mixed lengths over several chunks, with hybrid-like long rows: rows come
// back in input order and match the reference.
func TestProbabilitiesChunkedMixedLengths(t *testing.T) {
	dir := trainedBundle(t)
	m, err := Open(dir, ModelOptions{Session: SessionOptions{PoolSize: 1, IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, err := OpenReference(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	words := []string{"card", "refund", "euro", "stolen", "my", "please", "weeks", "merchant"}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{2, 17, 64, 65, 300} {
		vs := make([]featurizer.Vector, n)
		for i := range vs {
			var ws []string
			for range rng.IntN(1 + rng.IntN(400)) {
				ws = append(ws, words[rng.IntN(len(words))])
			}
			vs[i] = m.Featurizer().Transform(strings.Join(ws, " "))
		}
		got, err := m.Probabilities(context.Background(), vs)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Probabilities(vs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
				t.Fatalf("%d texts: row %d differs by %g", n, i/len(m.Manifest().Labels), d)
			}
		}
	}
}
