package consumer

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/schemas"
)

// Abstained predictions go to the review queue whatever their margin and
// the uncertain-sample rate, flagged; with Abstained off, only the sample.
func TestReviewRoutesAbstained(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	pred := func(id string, top, second float64, abstained bool) schemas.Prediction {
		return schemas.Prediction{ID: id, Label: "card_arrival", Confidence: top, Abstained: abstained,
			Scores: []schemas.Score{{Label: "card_arrival", Score: top}, {Label: "card_linking", Score: second}}}
	}
	it := &item{input: schemas.Input{ID: "q", Text: "what is the weather"}}
	for _, c := range []struct {
		name         string
		policy       ReviewPolicy
		abstainedOut int // abstained, confident predictions routed (of 20)
	}{
		{"routed", ReviewPolicy{Topic: "rq", MaxMargin: 0.1, Rate: 1, Abstained: true}, 20},
		{"off", ReviewPolicy{Topic: "rq", MaxMargin: 0.1, Rate: 1, Abstained: false}, 0},
	} {
		r := newReviewer(c.policy)
		// Fill the sample: one uncertain prediction per second at most.
		if rec, err := r.record(it, pred("u1", 0.5, 0.45, false), now); err != nil || rec == nil {
			t.Fatalf("%s: first uncertain prediction not offered: %v", c.name, err)
		}
		if rec, _ := r.record(it, pred("u2", 0.5, 0.45, false), now); rec != nil {
			t.Fatalf("%s: second uncertain prediction in the same second offered: the sample is rate-limited", c.name)
		}
		if rec, _ := r.record(it, pred("c1", 0.9, 0.05, false), now); rec != nil {
			t.Fatalf("%s: confident, not abstained prediction offered", c.name)
		}
		n := 0
		for range 20 {
			rec, err := r.record(it, pred("a", 0.9, 0.05, true), now)
			if err != nil {
				t.Fatal(err)
			}
			if rec == nil {
				continue
			}
			n++
			var rv schemas.Review
			if err := json.Unmarshal(rec.Value, &rv); err != nil {
				t.Fatal(err)
			}
			if !rv.Abstained || rv.ID != "a" || rv.Text != it.input.Text || rec.Topic != "rq" {
				t.Fatalf("%s: review record %s on %q", c.name, rec.Value, rec.Topic)
			}
		}
		if n != c.abstainedOut {
			t.Errorf("%s: %d of 20 abstained predictions routed, want %d", c.name, n, c.abstainedOut)
		}
	}
	var nilReviewer *reviewer // no review topic
	if rec, err := nilReviewer.record(it, pred("a", 0.9, 0.05, true), now); rec != nil || err != nil {
		t.Errorf("no review topic: %v %v", rec, err)
	}
}

// The --review-abstained flag defaults to on.
func TestReviewAbstainedFlagDefault(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !c.Review.Abstained {
		t.Error("--review-abstained defaults to false")
	}
	if err := fs.Parse([]string{"--review-abstained=false"}); err != nil || c.Review.Abstained {
		t.Errorf("--review-abstained=false: %v, %v", c.Review.Abstained, err)
	}
}

// abstainFake is a Predictor that abstains on texts starting "oos", with a
// confident prediction (so only abstention sends it to review).
type abstainFake struct{}

func (abstainFake) Ref() inference.ModelRef { return inference.ModelRef{Name: "fake", Version: "1"} }
func (f abstainFake) Predict(_ context.Context, texts []string) ([]inference.Prediction, error) {
	out := make([]inference.Prediction, len(texts))
	for i, t := range texts {
		out[i] = inference.Prediction{Label: "card_arrival", Confidence: 0.9, Model: f.Ref(), Abstained: strings.HasPrefix(t, "oos"),
			Scores: []inference.Score{{Label: "card_arrival", Score: 0.9}, {Label: "card_linking", Score: 0.05}}}
	}
	return out, nil
}

// Through the consumer's batch path: abstained predictions carry the flag,
// go to the review topic, and are counted per input topic.
func TestConsumerAbstained(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := New(Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": abstainFake{}, "quiet": abstainFake{}}, Registerer: reg,
		Review: ReviewPolicy{Topic: "rq", MaxMargin: 0.1, Rate: 5, Abstained: true}})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 30 {
		text := fmt.Sprint("in scope ", i)
		if i%3 == 0 {
			text = fmt.Sprint("oos ", i)
		}
		v, _ := json.Marshal(map[string]string{"id": fmt.Sprint(i), "text": text})
		recs = append(recs, &kgo.Record{Topic: "in", Offset: int64(i), Value: v})
	}
	s := &recordingSession{}
	if err := c.handle(t.Context(), s, recs); err != nil {
		t.Fatal(err)
	}
	var preds, reviews int
	for _, r := range s.out {
		switch r.Topic {
		case c.cfg.PredictionsTopic:
			var p schemas.Prediction
			if err := json.Unmarshal(r.Value, &p); err != nil {
				t.Fatal(err)
			}
			if want := p.Input.Offset%3 == 0; p.Abstained != want {
				t.Errorf("prediction %s: abstained %v, want %v", r.Value, p.Abstained, want)
			}
			if err := schemas.MustValidator(schemas.KindPrediction).Validate(r.Value); err != nil {
				t.Errorf("prediction %s breaks its schema: %v", r.Value, err)
			}
			preds++
		case "rq":
			var rv schemas.Review
			if err := json.Unmarshal(r.Value, &rv); err != nil {
				t.Fatal(err)
			}
			if !rv.Abstained || !strings.HasPrefix(rv.Text, "oos") {
				t.Errorf("review record %s", r.Value)
			}
			reviews++
		default:
			t.Errorf("output on %q: %s", r.Topic, r.Value)
		}
	}
	if preds != 30 || reviews != 10 {
		t.Errorf("%d predictions and %d review records, want 30 and 10", preds, reviews)
	}
	if got := testutil.ToFloat64(c.metrics.abstained.WithLabelValues("in")); got != 10 {
		t.Errorf("triage_consumer_abstained_total{topic=in} = %v, want 10", got)
	}
	n, err := testutil.GatherAndCount(reg, "triage_consumer_abstained_total")
	if err != nil || n != 2 {
		t.Errorf("triage_consumer_abstained_total has %d series (%v), want one per input topic, 0 before the first abstention", n, err)
	}
}
