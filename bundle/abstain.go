package bundle

import (
	"errors"
	"fmt"
	"math"
)

// Abstention scores. The score is what a prediction's confidence in being
// in scope is measured by; higher means more confident.
const (
	// ScoreCalibrated is the top-1 probability after the bundle's
	// temperature scaling (Monitoring.Temperature; 1 without one).
	ScoreCalibrated = "calibrated"
	// ScoreCalibratedCentroid is the calibrated top-1 probability minus the
	// cosine distance of the text's embedding to the predicted class's
	// centroid of training embeddings (ClassCentroids): a text far from
	// every example of the intent it is given is suspect even when the head
	// is sure. Encoder and hybrid bundles only.
	ScoreCalibratedCentroid = "calibrated-centroid"
)

// Abstain is a bundle's out-of-scope rule, chosen at training time on the
// validation split: a prediction whose score is below Threshold abstains
// (its label stays the best guess). Threshold is the lowest score at which
// the accepted validation predictions still reach TargetPrecision.
type Abstain struct {
	Score           string  `json:"score"`
	Threshold       float64 `json:"threshold"`
	TargetPrecision float64 `json:"target_precision"`
	// Precision and Coverage are measured on the validation split at
	// Threshold: accuracy of the accepted predictions and their share.
	Precision float64 `json:"validation_precision"`
	Coverage  float64 `json:"validation_coverage"`
	// ClassCentroids holds, per label (in Labels order), the unit-length
	// mean of the label's normalised training embeddings; set for
	// ScoreCalibratedCentroid only.
	ClassCentroids [][]float32 `json:"class_centroids,omitempty"`
}

// Of scores one prediction: calibrated is its calibrated top-1
// probability, label its predicted class, emb its embedding (nil without
// an encoder).
func (a *Abstain) Of(calibrated float64, label int, emb []float32) float64 {
	if a.Score != ScoreCalibratedCentroid || label < 0 || label >= len(a.ClassCentroids) {
		return calibrated
	}
	return calibrated - cosineDistance(emb, a.ClassCentroids[label])
}

// Abstains reports whether a prediction with this score abstains.
func (a *Abstain) Abstains(score float64) bool { return a != nil && score < a.Threshold }

// check verifies the rule fits the bundle, so a hand-edited model.json
// cannot make serving score with centroids that do not match its labels.
func (a *Abstain) check(m Manifest) error {
	if a == nil {
		return nil
	}
	switch a.Score {
	case ScoreCalibrated:
		if len(a.ClassCentroids) != 0 {
			return errors.New("abstain: class centroids with the calibrated score")
		}
	case ScoreCalibratedCentroid:
		if m.Encoder == nil {
			return fmt.Errorf("abstain: score %q needs an encoder", a.Score)
		}
		if len(a.ClassCentroids) != len(m.Labels) {
			return fmt.Errorf("abstain: %d class centroids for %d labels", len(a.ClassCentroids), len(m.Labels))
		}
		for i, c := range a.ClassCentroids {
			if len(c) != m.Encoder.Dim {
				return fmt.Errorf("abstain: centroid of %q has %d values, the encoder %d", m.Labels[i], len(c), m.Encoder.Dim)
			}
		}
	default:
		return fmt.Errorf("abstain: unknown score %q (want %q or %q)", a.Score, ScoreCalibrated, ScoreCalibratedCentroid)
	}
	return nil
}

// cosineDistance is 1 - cos(a, b); 1 (orthogonal) when either is empty or
// zero, so a missing embedding neither helps nor condemns a prediction.
func cosineDistance(a, b []float32) float64 {
	if len(a) == 0 || len(a) != len(b) {
		return 1
	}
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 1
	}
	return 1 - dot/math.Sqrt(na*nb)
}
