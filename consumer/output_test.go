package consumer

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/schemas"
)

// TestPredictionRecordBytes holds the arena-encoded prediction records to
// what json.Marshal made of the same prediction before.
func TestPredictionRecordBytes(t *testing.T) {
	c, err := New(Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": Passthrough{}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 8, 0, 0, 123456789, time.FixedZone("x", 3600))
	labels := []string{"card_arrival", `"quoted"`, "<a>&b", "ünï 🙂", "tab\there", "\u2028"}
	var items []item
	for i := range 200 {
		p := inference.Prediction{Label: labels[i%len(labels)], Confidence: float32(i) / 200, Model: inference.ModelRef{Name: "m<1>", Version: "v&1"},
			Truncated: i%3 == 0, Abstained: i%7 == 0}
		for j := range i % 6 {
			p.Scores = append(p.Scores, inference.Score{Label: labels[(i+j)%len(labels)], Score: 1 / float32(j+i+1)})
		}
		if i%2 == 0 {
			p.Signals = inference.Signals{Calibrated: 0.1 + float32(i)/300, Margin: 1e-7 * float32(i), Tokens: i, OOVRate: 0.3, EmbedDist: float32(math.NaN())}
			if i%4 == 0 {
				p.Signals.EmbedDist = float32(i) / 100
			}
		}
		rec := &kgo.Record{Topic: "in", Partition: int32(i % 3), Offset: int64(i) * 1e9}
		if i%5 != 0 {
			rec.Timestamp = now.Add(-time.Duration(i) * time.Millisecond)
		}
		items = append(items, item{rec: rec, input: schemas.Input{ID: "q-" + labels[i%len(labels)]}, pred: p})
	}
	a := c.takeArena(len(items))
	var recs []*kgo.Record
	var want [][]byte
	for i := range items {
		it := &items[i]
		v, err := json.Marshal(oldPrediction(it, now))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, v)
		r, err := c.predictionRecord(a, it, a.prediction(it, now))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	for i, r := range recs { // checked after all are built: no record overwrote another
		if !bytes.Equal(r.Value, want[i]) || string(r.Key) != items[i].input.ID {
			t.Fatalf("record %d:\n got %s (key %q)\nwant %s", i, r.Value, r.Key, want[i])
		}
		if len(r.Headers) != 2 || string(r.Headers[0].Value) != kindPrediction || r.Topic != c.cfg.PredictionsTopic {
			t.Fatalf("record %d: headers %v topic %q", i, r.Headers, r.Topic)
		}
	}
}

// oldPrediction is how the prediction record was built before the arena.
func oldPrediction(it *item, now time.Time) schemas.Prediction {
	p := it.pred
	scores := make([]schemas.Score, len(p.Scores))
	for i, s := range p.Scores {
		scores[i] = schemas.Score{Label: s.Label, Score: float64(s.Score)}
	}
	var latency float64
	if !it.rec.Timestamp.IsZero() {
		latency = max(0, float64(now.Sub(it.rec.Timestamp).Microseconds())/1000)
	}
	var sig *schemas.Signals
	if s := p.Signals; s.Calibrated > 0 {
		sig = &schemas.Signals{Calibrated: round5(s.Calibrated), Margin: round5(s.Margin), Tokens: s.Tokens, OOVRate: round5(s.OOVRate)}
		if d := float64(s.EmbedDist); !math.IsNaN(d) {
			d = max(0, round5(s.EmbedDist))
			sig.EmbedDist = &d
		}
	}
	return schemas.Prediction{ID: it.input.ID, Input: schemas.InputRef{Topic: it.rec.Topic, Partition: it.rec.Partition, Offset: it.rec.Offset},
		Label: p.Label, Confidence: float64(p.Confidence), Scores: scores, Model: schemas.ModelRef{Name: p.Model.Name, Version: p.Model.Version},
		ClassifiedAt: now.UTC(), LatencyMS: latency, Truncated: p.Truncated, Abstained: p.Abstained, Signals: sig}
}
