package consumer

import (
	"context"

	"github.com/triage-ml/triage/inference"
)

// Passthrough is a Predictor with no model: it labels every text "passthrough".
// It measures the streaming path alone (Kafka, validation, transactions),
// the baseline the stream benchmark holds the real model against.
type Passthrough struct{}

// Ref names the pseudo-model.
func (Passthrough) Ref() inference.ModelRef {
	return inference.ModelRef{Name: "passthrough", Version: "0"}
}

// Predict returns a fixed prediction per text.
func (p Passthrough) Predict(_ context.Context, texts []string) ([]inference.Prediction, error) {
	out := make([]inference.Prediction, len(texts))
	for i := range out {
		out[i] = inference.Prediction{Label: "passthrough", Confidence: 1,
			Scores: []inference.Score{{Label: "passthrough", Score: 1}}, Model: p.Ref()}
	}
	return out, nil
}

// PassthroughRoute, as a route's model, serves Passthrough (benchmarks).
const PassthroughRoute = "passthrough"
