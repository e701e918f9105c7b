package consumer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/triage-ml/triage/schemas"
)

// Review defaults.
const (
	DefaultReviewTopic  = "triage.review-queue"
	DefaultReviewMargin = 0.1
	DefaultReviewRate   = 5
)

// ReviewPolicy picks predictions worth a person's label: those whose top-2
// margin is below MaxMargin (the model hesitates between two labels), at
// most Rate per second, so the queue is a sample a person can keep up with.
// With Abstained, every abstained prediction (out of scope for the model)
// goes too, unsampled: it is routed to a person rather than acted on.
type ReviewPolicy struct {
	Topic     string
	MaxMargin float64
	Rate      float64
	Abstained bool
}

// margin is the best probability minus the second best.
func margin(scores []schemas.Score) float64 {
	switch len(scores) {
	case 0:
		return 0
	case 1:
		return scores[0].Score
	}
	return scores[0].Score - scores[1].Score
}

// reviewer decides which predictions go to the review queue.
type reviewer struct {
	policy  ReviewPolicy
	limiter *rate.Limiter
}

func newReviewer(p ReviewPolicy) *reviewer {
	if p.Topic == "" {
		return nil
	}
	return &reviewer{policy: p, limiter: rate.NewLimiter(rate.Limit(p.Rate), max(1, int(p.Rate)))}
}

// record returns the review record for a prediction, or nil when it is
// confident enough or the sample is full for now. It is produced in the
// same transaction as the prediction: offered exactly once.
func (r *reviewer) record(it *item, p schemas.Prediction, now time.Time) (*kgo.Record, error) {
	if r == nil || it.reason != "" {
		return nil, nil
	}
	m := margin(p.Scores)
	routed := p.Abstained && r.policy.Abstained
	if !routed && (m >= r.policy.MaxMargin || !r.limiter.AllowN(now, 1)) {
		return nil, nil
	}
	v, err := json.Marshal(schemas.Review{ID: p.ID, Text: it.input.Text, Label: p.Label, Confidence: p.Confidence, Margin: m,
		Scores: p.Scores, Model: p.Model, Input: p.Input, ClassifiedAt: p.ClassifiedAt, Abstained: p.Abstained})
	if err != nil {
		return nil, fmt.Errorf("encode review item: %w", err)
	}
	return &kgo.Record{Topic: r.policy.Topic, Key: []byte(p.ID), Value: v,
		Headers: []kgo.RecordHeader{{Key: HeaderKind, Value: []byte("review")}}}, nil
}
