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

// Header values shared by every output record; kgo only reads them.
var (
	hdrPrediction       = []byte(kindPrediction)
	hdrPredictionSchema = []byte(schemas.Version + "/prediction")
)

// arena holds one transaction's prediction records and their bytes, so
// batches reuse memory instead of allocating per message. A record handed
// to kgo must stay untouched until its promise fires, so an arena is
// reused only after the transaction it served flushed (handle).
type arena struct {
	buf     []byte
	recs    []kgo.Record
	hdrs    []kgo.RecordHeader
	scores  []schemas.Score // scratch for the prediction being encoded
	sig     schemas.Signals
	dist    float64
	pred    schemas.Prediction
	nextRec int
	outs    []*kgo.Record // every output of the transaction, in order
}

// takeArena returns the consumer's arena, sized for n outputs, or a new
// one; the caller gives it back by setting c.arena once it is safe.
func (c *Consumer) takeArena(n int) *arena {
	a := c.arena
	c.arena = nil
	if a == nil {
		a = &arena{}
	}
	a.buf = a.buf[:0]
	if cap(a.buf) == 0 {
		a.buf = make([]byte, 0, n*640)
	}
	if cap(a.recs) < n {
		a.recs = make([]kgo.Record, n)
		a.hdrs = make([]kgo.RecordHeader, 2*n)
	}
	a.nextRec = 0
	clear(a.outs)
	a.outs = a.outs[:0]
	return a
}

// predictionRecord encodes p as the item's output record. Key and value
// are appended to the arena's buffer; when it grows, earlier records keep
// pointing into the old array, which stays valid.
func (c *Consumer) predictionRecord(a *arena, it *item, p *schemas.Prediction) (*kgo.Record, error) {
	start := len(a.buf)
	a.buf = append(a.buf, it.input.ID...)
	keyEnd := len(a.buf)
	var err error
	a.buf, err = p.AppendJSON(a.buf)
	if err != nil {
		a.buf = a.buf[:start]
		return nil, fmt.Errorf("encode prediction: %w", err)
	}
	b := a.buf
	i := a.nextRec
	a.nextRec++
	h := a.hdrs[2*i : 2*i+2 : 2*i+2]
	h[0] = kgo.RecordHeader{Key: HeaderKind, Value: hdrPrediction}
	h[1] = kgo.RecordHeader{Key: HeaderSchema, Value: hdrPredictionSchema}
	r := &a.recs[i]
	*r = kgo.Record{
		Topic:   c.cfg.PredictionsTopic,
		Key:     b[start:keyEnd:keyEnd],
		Value:   b[keyEnd:len(b):len(b)],
		Headers: h,
	}
	return r, nil
}

// prediction is the prediction record of a healthy item, built in the
// arena's scratch space: valid until the next call.
func (a *arena) prediction(it *item, now time.Time) *schemas.Prediction {
	p := it.pred
	if a.scores == nil {
		a.scores = make([]schemas.Score, 0, 8) // never nil: the record says [] rather than null
	}
	scores := a.scores[:0]
	for _, s := range p.Scores {
		scores = append(scores, schemas.Score{Label: s.Label, Score: float64(s.Score)})
	}
	a.scores = scores
	var latency float64
	if !it.rec.Timestamp.IsZero() {
		latency = max(0, float64(now.Sub(it.rec.Timestamp).Microseconds())/1000)
	}
	a.pred = schemas.Prediction{
		ID:           it.input.ID,
		Input:        schemas.InputRef{Topic: it.rec.Topic, Partition: it.rec.Partition, Offset: it.rec.Offset},
		Label:        p.Label,
		Confidence:   float64(p.Confidence),
		Scores:       scores,
		Model:        schemas.ModelRef{Name: p.Model.Name, Version: p.Model.Version},
		ClassifiedAt: now.UTC(),
		LatencyMS:    latency,
		Truncated:    p.Truncated,
		Abstained:    p.Abstained,
	}
	if signals(&a.sig, &a.dist, p.Signals) {
		a.pred.Signals = &a.sig
	}
	return &a.pred
}

// signals fills out with the record form of a prediction's monitoring
// signals (dist backs its embedding distance); false for predictors that
// measure none (Calibrated is then zero).
func signals(out *schemas.Signals, dist *float64, s inference.Signals) bool {
	if s.Calibrated <= 0 {
		return false
	}
	*out = schemas.Signals{Calibrated: round5(s.Calibrated), Margin: round5(s.Margin), Tokens: s.Tokens, OOVRate: round5(s.OOVRate)}
	if d := float64(s.EmbedDist); !math.IsNaN(d) {
		*dist = max(0, round5(s.EmbedDist))
		out.EmbedDist = dist
	}
	return true
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
