package trainer

import (
	"fmt"
	"log/slog"
	"math"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/scoring"
)

// DefaultAbstainPrecision is the in-scope precision the abstention
// threshold is chosen for when Options.AbstainPrecision is 0.
const DefaultAbstainPrecision = 0.97

// abstainInputs are the validation split as the abstention rule scores it.
type abstainInputs struct {
	x           []featurizer.Vector // the head's validation inputs
	y           []int
	temperature float64   // calibration; 1 without a drift reference
	vaE, trE    []float32 // embeddings, [n][dim]; nil without an encoder
	trY         []int
	dim         int
	target      float64
}

// setAbstain gives man its abstention rule when target > 0, taking the
// temperature from its drift reference; a rule that cannot be chosen is
// logged, not fatal (the model then never abstains, as before the rule).
func setAbstain(man *bundle.Manifest, m *Linear, in abstainInputs, log *slog.Logger) {
	if in.target <= 0 {
		return
	}
	in.temperature = 1
	if man.Monitoring != nil && man.Monitoring.Temperature > 0 {
		in.temperature = man.Monitoring.Temperature
	}
	a, err := abstainRule(m, in)
	if err != nil {
		log.Warn("no abstention rule: the model never abstains", "err", err)
		return
	}
	man.Abstain = a
	log.Info("abstention threshold chosen", "score", a.Score, "threshold", a.Threshold,
		"target_precision", a.TargetPrecision, "validation_precision", a.Precision, "validation_coverage", a.Coverage)
}

// abstainRule chooses the bundle's out-of-scope rule on the validation
// split: the score (calibrated top-1 probability, less the distance to the
// predicted class's training centroid when there is an encoder) and the
// lowest threshold at which the accepted predictions reach the target
// precision.
func abstainRule(m *Linear, in abstainInputs) (*bundle.Abstain, error) {
	a := &bundle.Abstain{Score: bundle.ScoreCalibrated, TargetPrecision: in.target}
	if in.dim > 0 && len(in.trE) > 0 {
		a.Score = bundle.ScoreCalibratedCentroid
		a.ClassCentroids = classCentroids(in.trE, in.trY, in.dim, m.NumClasses)
	}
	scores := make([]float64, len(in.x))
	correct := make([]bool, len(in.x))
	z := make([]float32, m.NumClasses)
	row := make([]float64, m.NumClasses)
	for i, x := range in.x {
		m.Scores(x, z)
		softmaxInPlace(z)
		for c, p := range z {
			row[c] = float64(p)
		}
		cal := drift.Calibrate(row, in.temperature)
		best := 0
		for c := range cal {
			if cal[c] > cal[best] {
				best = c
			}
		}
		var emb []float32
		if len(in.vaE) > 0 {
			emb = in.vaE[i*in.dim : (i+1)*in.dim]
		}
		// Serving sees the calibrated probability as a float32: so does
		// the threshold, or a validation text could flip sides.
		scores[i] = a.Of(float64(float32(cal[best])), best, emb)
		correct[i] = best == in.y[i]
	}
	op, err := scoring.ChooseThreshold(scores, correct, in.target)
	if err != nil {
		return nil, fmt.Errorf("abstention threshold: %w", err)
	}
	a.Threshold, a.Precision, a.Coverage = op.Threshold, op.Precision, op.Coverage
	return a, nil
}

// classCentroids is, per class, the unit-length mean of its normalised
// training embeddings (nil for a class with none, which then scores as far).
func classCentroids(emb []float32, y []int, dim, classes int) [][]float32 {
	sums := make([][]float64, classes)
	for i, c := range y {
		v := emb[i*dim : (i+1)*dim]
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		if n == 0 {
			continue
		}
		if sums[c] == nil {
			sums[c] = make([]float64, dim)
		}
		inv := 1 / math.Sqrt(n)
		for j, x := range v {
			sums[c][j] += float64(x) * inv
		}
	}
	out := make([][]float32, classes)
	for c, s := range sums {
		out[c] = make([]float32, dim)
		var n float64
		for _, x := range s {
			n += x * x
		}
		if n == 0 {
			continue
		}
		inv := 1 / math.Sqrt(n)
		for j, x := range s {
			out[c][j] = float32(x * inv)
		}
	}
	return out
}
