package inference

import (
	"math"

	"github.com/triage-ml/triage/bundle"
)

// Signals are what one prediction tells the drift monitor, computed next
// to the prediction where the full probability row, the input and the
// embedding are at hand, so the monitor needs nothing but the predictions
// topic.
type Signals struct {
	// Calibrated is the top-1 probability after the bundle's temperature
	// scaling (the raw confidence when the bundle has none).
	Calibrated float32
	// Margin is top-1 minus top-2 probability (raw).
	Margin float32
	// Tokens is the input's length: WordPiece tokens for models with an
	// encoder, whitespace-separated words otherwise.
	Tokens int
	// OOVRate is the share of the input's n-grams unseen in training, or of
	// its word pieces that are [UNK] for encoder-only models.
	OOVRate float32
	// EmbedDist is the cosine distance of the text's embedding to the
	// training centroid; NaN when the model has no encoder (or no centroid).
	EmbedDist float32
	// AbstainScore is the score the bundle's abstention rule compares
	// with its threshold (Calibrated for bundles without a rule).
	AbstainScore float32
}

// calibrator applies a bundle's temperature to a probability row: the head
// is a softmax, so log p equals the logits up to a constant and
// softmax(log p / T) is exactly the temperature-scaled distribution.
type calibrator struct{ invT float64 }

func newCalibrator(m bundle.Manifest) calibrator {
	if ref := m.Monitoring; ref != nil && ref.Temperature > 0 {
		return calibrator{invT: 1 / ref.Temperature}
	}
	return calibrator{}
}

// argmax is the index of row's largest value (the first on ties).
func argmax(row []float32) int {
	best := 0
	for i, p := range row {
		if p > row[best] {
			best = i
		}
	}
	return best
}

// top1 returns the calibrated probability of row's best class, best.
func (c calibrator) top1(row []float32, best int) float32 {
	if c.invT == 0 || c.invT == 1 {
		return row[best]
	}
	// p_i^(1/T) / sum_j p_j^(1/T), relative to the best for stability.
	lb := math.Log(math.Max(float64(row[best]), 1e-30))
	var z float64
	for _, p := range row {
		if p > 0 {
			z += math.Exp((math.Log(float64(p)) - lb) * c.invT)
		}
	}
	return float32(1 / z)
}
