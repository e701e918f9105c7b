package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/schemas"
)

// stagedFake is a stagedPredictor whose batches fail when they hold a
// text starting "boom", and whose single texts "boom!" fail alone.
type stagedFake struct{}

func (stagedFake) Ref() inference.ModelRef { return inference.ModelRef{Name: "fake", Version: "1"} }
func (f stagedFake) Predict(ctx context.Context, texts []string) ([]inference.Prediction, error) {
	return f.PredictInputs(ctx, f.TransformAllTo(nil, texts))
}

// TransformAllTo reuses dst like the real model, so a slot reused while
// its batch is still being predicted would show as wrong predictions.
func (stagedFake) TransformAllTo(dst []inference.Input, texts []string) []inference.Input {
	ins := slices.Grow(dst[:0], len(texts))[:len(texts)]
	for i, t := range texts {
		ins[i].Features.IDs = append(ins[i].Features.IDs[:0], int64(len(t)))
		ins[i].Tokens = append(ins[i].Tokens[:0], int64(len(texts)))
		ins[i].Truncated = strings.HasPrefix(t, "boom")
		ins[i].Length = len(t)
		if t == "boom!" {
			ins[i].Length = -1
		}
	}
	return ins
}
func (f stagedFake) PredictInputs(_ context.Context, ins []inference.Input) ([]inference.Prediction, error) {
	out := make([]inference.Prediction, len(ins))
	for i, in := range ins {
		if in.Truncated && (len(ins) > 1 || in.Length < 0) {
			return nil, errors.New("boom")
		}
		out[i] = inference.Prediction{Label: fmt.Sprint("len", in.Length), Confidence: 0.5,
			Scores: []inference.Score{{Label: fmt.Sprint("len", in.Length), Score: 0.5}}, Model: f.Ref()}
	}
	return out, nil
}

type recordingSession struct {
	fakeSession
	out []*kgo.Record
}

func (r *recordingSession) produce(ctx context.Context, rec *kgo.Record, p func(*kgo.Record, error)) {
	cp := *rec
	cp.Value = append([]byte(nil), rec.Value...)
	r.out = append(r.out, &cp)
	p(rec, nil)
}

// TestPipelineOrder runs a staged predictor through several micro-batches
// with dead letters before and during classification, twice (the second
// time on reused buffers): one output per input, in input order.
func TestPipelineOrder(t *testing.T) {
	c, err := New(Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": stagedFake{}, "other": Passthrough{}}})
	if err != nil {
		t.Fatal(err)
	}
	c.cfg.Batch.MaxCount = 7
	var recs []*kgo.Record
	want := make([]string, 0, 100)
	for i := range 100 {
		text, topic := fmt.Sprintf("text %d", i), "in"
		wantOut := fmt.Sprintf("len%d", len(text))
		switch {
		case i%13 == 5:
			text, wantOut = "boom", "len4" // fails its batch, passes alone
		case i%17 == 3:
			text, wantOut = "boom!", schemas.ReasonModelError
		case i%11 == 4:
			text, wantOut = " ", schemas.ReasonEmptyText
		case i%19 == 2:
			topic, wantOut = "other", "passthrough"
		}
		v, _ := json.Marshal(map[string]string{"id": fmt.Sprint(i), "text": text})
		recs = append(recs, &kgo.Record{Topic: topic, Offset: int64(i), Value: v})
		want = append(want, wantOut)
	}
	for round := range 2 {
		s := &recordingSession{}
		if err := c.handle(t.Context(), s, recs); err != nil {
			t.Fatal(err)
		}
		if len(s.out) != len(recs) {
			t.Fatalf("round %d: %d outputs for %d inputs", round, len(s.out), len(recs))
		}
		// Dead letters and predictions go to different topics; within each,
		// the order is the inputs'.
		last := map[string]int64{}
		for i, r := range s.out {
			var got struct {
				Label  string
				Input  schemas.InputRef
				Source schemas.Source
				Reason schemas.Reason
			}
			if err := json.Unmarshal(r.Value, &got); err != nil {
				t.Fatal(err)
			}
			off, label := got.Input.Offset, got.Label
			if r.Topic == c.cfg.DeadLetterTopic {
				off, label = got.Source.Offset, got.Reason.Code
			}
			if prev, ok := last[r.Topic]; ok && off <= prev {
				t.Errorf("round %d: output %d on %s is offset %d after %d", round, i, r.Topic, off, prev)
			}
			last[r.Topic] = off
			if label != want[off] {
				t.Errorf("round %d: offset %d: %q, want %q", round, off, label, want[off])
			}
		}
	}
}
