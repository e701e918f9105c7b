package consumer

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/schemas"
)

// Headers on every output record, so a reader can tell outputs apart
// without parsing the value.
const (
	HeaderKind         = "triage-kind" // "prediction" or "dead-letter"
	HeaderSchema       = "triage-schema"
	HeaderReason       = "triage-reason"
	kindPrediction     = "prediction"
	kindDeadLetter     = "dead-letter"
	maxDeadLetterValue = 512 << 10 // base64 grows it by 4/3: stays under the default 1 MB record limit
)

// output builds the one record an input item yields; p is the item's
// prediction (unused for a dead letter).
func (c *Consumer) output(it *item, p schemas.Prediction, now time.Time) (*kgo.Record, error) {
	if it.reason != "" {
		return c.deadLetter(it, now)
	}
	v, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode prediction: %w", err)
	}
	return &kgo.Record{
		Topic: c.cfg.PredictionsTopic,
		Key:   []byte(it.input.ID),
		Value: v,
		Headers: []kgo.RecordHeader{
			{Key: HeaderKind, Value: []byte(kindPrediction)},
			{Key: HeaderSchema, Value: []byte(schemas.Version + "/prediction")},
		},
	}, nil
}

// prediction is the prediction record of a healthy item.
func prediction(it *item, now time.Time) schemas.Prediction {
	p := it.pred
	scores := make([]schemas.Score, len(p.Scores))
	for i, s := range p.Scores {
		scores[i] = schemas.Score{Label: s.Label, Score: float64(s.Score)}
	}
	var latency float64
	if !it.rec.Timestamp.IsZero() {
		latency = max(0, float64(now.Sub(it.rec.Timestamp).Microseconds())/1000)
	}
	return schemas.Prediction{
		ID:           it.input.ID,
		Input:        schemas.InputRef{Topic: it.rec.Topic, Partition: it.rec.Partition, Offset: it.rec.Offset},
		Label:        p.Label,
		Confidence:   float64(p.Confidence),
		Scores:       scores,
		Model:        schemas.ModelRef{Name: p.Model.Name, Version: p.Model.Version},
		ClassifiedAt: now.UTC(),
		LatencyMS:    latency,
		Truncated:    p.Truncated,
		Signals:      signals(p.Signals),
	}
}

// signals is the record form of a prediction's monitoring signals; nil
// for predictors that measure none (Calibrated is then zero).
func signals(s inference.Signals) *schemas.Signals {
	if s.Calibrated <= 0 {
		return nil
	}
	out := &schemas.Signals{Calibrated: round5(s.Calibrated), Margin: round5(s.Margin), Tokens: s.Tokens, OOVRate: round5(s.OOVRate)}
	if d := float64(s.EmbedDist); !math.IsNaN(d) {
		d = max(0, round5(s.EmbedDist))
		out.EmbedDist = &d
	}
	return out
}

// round5 keeps five decimals: float32 noise would otherwise fill the
// record with digits no statistic uses.
func round5(x float32) float64 { return math.Round(float64(x)*1e5) / 1e5 }

// deadLetter keeps the original bytes and headers with the reason and the
// source coordinates, so the input can be inspected and replayed.
func (c *Consumer) deadLetter(it *item, now time.Time) (*kgo.Record, error) {
	headers := make([]schemas.Header, len(it.rec.Headers))
	for i, h := range it.rec.Headers {
		headers[i] = schemas.Header{Key: h.Key, Value: h.Value}
	}
	value := it.rec.Value
	msg := it.detail
	if len(value) > maxDeadLetterValue {
		msg = fmt.Sprintf("%s (original value of %d bytes cut to %d in this dead letter)", msg, len(value), maxDeadLetterValue)
		value = value[:maxDeadLetterValue]
	}
	v, err := json.Marshal(schemas.DeadLetter{
		Original: schemas.Original{Value: value, Key: it.rec.Key, Headers: headers},
		Reason:   schemas.Reason{Code: it.reason, Message: msg},
		Source:   schemas.Source{Topic: it.rec.Topic, Partition: it.rec.Partition, Offset: it.rec.Offset},
		FailedAt: now.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return &kgo.Record{
		Topic: c.cfg.DeadLetterTopic,
		Key:   it.rec.Key,
		Value: v,
		Headers: []kgo.RecordHeader{
			{Key: HeaderKind, Value: []byte(kindDeadLetter)},
			{Key: HeaderSchema, Value: []byte(schemas.Version + "/dead-letter")},
			{Key: HeaderReason, Value: []byte(it.reason)},
		},
	}, nil
}
