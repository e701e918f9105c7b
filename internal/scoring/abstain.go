package scoring

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrTargetUnreachable is returned by ChooseThreshold when even the single
// most confident prediction misses the target precision.
var ErrTargetUnreachable = errors.New("target precision unreachable at any threshold")

// Operating is an abstention threshold and what accepting predictions
// scoring at or above it gives on a labelled set.
type Operating struct {
	Threshold float64 `json:"threshold"`
	Precision float64 `json:"precision"` // accuracy of the accepted predictions
	Coverage  float64 `json:"coverage"`  // share accepted
}

// ChooseThreshold picks the lowest threshold t such that predictions with
// score >= t are correct at a rate of at least target: the largest
// accepted set (most coverage) that meets the precision target. Tied
// scores are accepted or abstained together. A higher target never gives a
// lower threshold, since any set meeting it meets every lower target.
func ChooseThreshold(scores []float64, correct []bool, target float64) (Operating, error) {
	if len(scores) != len(correct) {
		return Operating{}, fmt.Errorf("choose threshold: %d scores, %d outcomes", len(scores), len(correct))
	}
	if len(scores) == 0 {
		return Operating{}, errors.New("choose threshold: no predictions")
	}
	if !(target > 0 && target <= 1) {
		return Operating{}, fmt.Errorf("choose threshold: target precision %v, want (0, 1]", target)
	}
	order := descending(scores)
	best, hits := -1, 0
	var bestPrec float64
	for k, i := range order {
		if correct[i] {
			hits++
		}
		if k+1 < len(order) && scores[order[k+1]] == scores[i] {
			continue // a tie: the threshold cannot split it
		}
		if p := float64(hits) / float64(k+1); p >= target {
			best, bestPrec = k, p
		}
	}
	if best < 0 {
		return Operating{}, fmt.Errorf("choose threshold: %w (%v on %d predictions)", ErrTargetUnreachable, target, len(scores))
	}
	return Operating{Threshold: scores[order[best]], Precision: bestPrec, Coverage: float64(best+1) / float64(len(scores))}, nil
}

// descending returns the indices of scores, highest score first (NaN last).
func descending(scores []float64) []int {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := scores[a], scores[b]
		switch {
		case x > y || (!math.IsNaN(x) && math.IsNaN(y)):
			return -1
		case x < y || (math.IsNaN(x) && !math.IsNaN(y)):
			return 1
		}
		return 0
	})
	return order
}

// OOSPoint is what one abstention threshold gives on a set of in-scope
// texts (whose gold label the model knows) and out-of-scope texts (whose
// intent it was never taught). A prediction abstains when its score is
// below Threshold.
type OOSPoint struct {
	Threshold float64 `json:"threshold"`
	// Accuracy is on in-scope texts counting abstentions as errors:
	// correct and accepted, over all in-scope texts.
	Accuracy float64 `json:"in_scope_accuracy"`
	// SelectiveAccuracy is on the accepted in-scope texts only.
	SelectiveAccuracy float64 `json:"selective_accuracy"`
	// Coverage is the share of in-scope texts accepted.
	Coverage float64 `json:"in_scope_coverage"`
	// OOSRecall is the share of out-of-scope texts abstained.
	OOSRecall float64 `json:"oos_recall"`
}

// OOSSet holds scored predictions for an out-of-scope evaluation.
type OOSSet struct {
	InScores  []float64 // in-scope texts' abstention scores
	InCorrect []bool    // whether each in-scope prediction is right
	OOSScores []float64 // out-of-scope texts' abstention scores
}

// At measures one threshold.
func (s OOSSet) At(threshold float64) OOSPoint {
	p := OOSPoint{Threshold: threshold}
	var accepted, right, rejected int
	for i, sc := range s.InScores {
		if sc >= threshold {
			accepted++
			if s.InCorrect[i] {
				right++
			}
		}
	}
	for _, sc := range s.OOSScores {
		if !(sc >= threshold) {
			rejected++
		}
	}
	if n := len(s.InScores); n > 0 {
		p.Accuracy = float64(right) / float64(n)
		p.Coverage = float64(accepted) / float64(n)
	}
	if accepted > 0 {
		p.SelectiveAccuracy = float64(right) / float64(accepted)
	} else {
		p.SelectiveAccuracy = 1 // nothing accepted, nothing wrong
	}
	if len(s.OOSScores) > 0 {
		p.OOSRecall = float64(rejected) / float64(len(s.OOSScores))
	}
	return p
}

// Lowest is the lowest score of the set: the threshold that accepts
// everything (finite, unlike -Inf, so it encodes as JSON).
func (s OOSSet) Lowest() float64 {
	all := slices.Concat(s.InScores, s.OOSScores)
	if len(all) == 0 {
		return 0
	}
	return slices.Min(all)
}

// Curve measures the thresholds at which in-scope coverage is each of
// coverages (the in-scope score quantiles), after the point that accepts
// everything, so the points read the same for any score scale.
func (s OOSSet) Curve(coverages []float64) []OOSPoint {
	out := []OOSPoint{s.At(s.Lowest())}
	if len(s.InScores) == 0 {
		return out
	}
	sorted := slices.Clone(s.InScores)
	slices.Sort(sorted)
	n := len(sorted)
	for _, c := range coverages {
		k := min(n-1, max(0, n-int(math.Round(c*float64(n))))) // accept the top round(c*n)
		out = append(out, s.At(sorted[k]))
	}
	return out
}

// DefaultCoverages are the in-scope coverages a curve reports.
var DefaultCoverages = []float64{0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.90, 0.88, 0.85, 0.80, 0.75, 0.70, 0.60, 0.50}

// Best is the point, over every threshold that separates the set's scores,
// that satisfies ok and beats the others by better (nil: the higher OOS
// recall), e.g. the best recall at in-scope accuracy >= 0.93. The threshold
// is picked on this very set: a reading of the curve, not an operating
// point a bundle would have chosen.
func (s OOSSet) Best(ok func(OOSPoint) bool, better func(a, b OOSPoint) bool) (OOSPoint, bool) {
	if better == nil {
		better = func(a, b OOSPoint) bool { return a.OOSRecall > b.OOSRecall }
	}
	cands := slices.Concat(s.InScores, s.OOSScores)
	slices.Sort(cands)
	cands = slices.Compact(cands)
	var best OOSPoint
	found := false
	for _, t := range append(cands, math.Inf(1)) {
		p := s.At(t)
		if ok(p) && (!found || better(p, best)) {
			best, found = p, true
		}
	}
	return best, found
}
