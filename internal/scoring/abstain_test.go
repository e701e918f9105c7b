package scoring

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// precisionAt is the accuracy of predictions scoring at or above t.
func precisionAt(scores []float64, correct []bool, t float64) (prec, cov float64) {
	var acc, ok int
	for i, s := range scores {
		if s >= t {
			acc++
			if correct[i] {
				ok++
			}
		}
	}
	return float64(ok) / float64(acc), float64(acc) / float64(len(scores))
}

func TestChooseThresholdHandComputed(t *testing.T) {
	// Best first: 0.9 ok, 0.8 ok, 0.7 wrong, 0.6 ok, 0.5 ok, 0.4 wrong, 0.3 wrong.
	scores := []float64{0.5, 0.9, 0.3, 0.7, 0.8, 0.6, 0.4}
	correct := []bool{true, true, false, false, true, true, false}
	for _, c := range []struct {
		target, threshold, precision, coverage float64
	}{
		{1, 0.8, 1, 2.0 / 7},          // 0.9, 0.8
		{0.8, 0.5, 0.8, 5.0 / 7},      // 4 of the top 5
		{0.75, 0.5, 0.8, 5.0 / 7},     // top 6 is 4/6 < 0.75
		{0.5, 0.3, 4.0 / 7, 1},        // everything
		{0.66, 0.4, 4.0 / 6, 6.0 / 7}, // top 6 is 0.667
	} {
		op, err := ChooseThreshold(scores, correct, c.target)
		if err != nil {
			t.Fatalf("target %v: %v", c.target, err)
		}
		if op.Threshold != c.threshold || math.Abs(op.Precision-c.precision) > 1e-12 || math.Abs(op.Coverage-c.coverage) > 1e-12 {
			t.Errorf("target %v: got %+v, want threshold %v precision %v coverage %v", c.target, op, c.threshold, c.precision, c.coverage)
		}
	}
}

func TestChooseThresholdTiesAndErrors(t *testing.T) {
	// The tie at 0.8 holds one right and one wrong prediction: a threshold
	// cannot accept only the right one, so target 1 keeps just 0.9.
	op, err := ChooseThreshold([]float64{0.9, 0.8, 0.8}, []bool{true, true, false}, 1)
	if err != nil || op.Threshold != 0.9 || op.Coverage != 1.0/3 {
		t.Errorf("tie: got %+v, %v; want threshold 0.9, coverage 1/3", op, err)
	}
	if _, err := ChooseThreshold([]float64{0.9, 0.1}, []bool{false, true}, 0.9); !errors.Is(err, ErrTargetUnreachable) {
		t.Errorf("most confident prediction wrong: err %v, want ErrTargetUnreachable", err)
	}
	for _, target := range []float64{0, -1, 1.5, math.NaN()} {
		if _, err := ChooseThreshold([]float64{1}, []bool{true}, target); err == nil {
			t.Errorf("target %v accepted", target)
		}
	}
	if _, err := ChooseThreshold(nil, nil, 0.9); err == nil {
		t.Error("no predictions accepted")
	}
	if _, err := ChooseThreshold([]float64{1}, nil, 0.9); err == nil {
		t.Error("mismatched lengths accepted")
	}
}

// On random validation sets the chosen threshold meets the target, is the
// lowest that does among the set's scores, and never falls as the target
// rises.
func TestChooseThresholdMeetsTargetMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		n := 20 + rng.IntN(400)
		scores, correct := make([]float64, n), make([]bool, n)
		for i := range n {
			scores[i] = math.Round(rng.Float64()*50) / 50 // ties
			correct[i] = rng.Float64() < 0.3+0.7*scores[i]
		}
		prev := math.Inf(-1)
		for _, target := range []float64{0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 1} {
			op, err := ChooseThreshold(scores, correct, target)
			if errors.Is(err, ErrTargetUnreachable) {
				prev = math.Inf(1) // every higher target is unreachable too
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if prev == math.Inf(1) {
				t.Fatalf("trial %d: target %v reachable after a lower one was not", trial, target)
			}
			prec, cov := precisionAt(scores, correct, op.Threshold)
			if prec < target || prec != op.Precision || cov != op.Coverage {
				t.Fatalf("trial %d target %v: threshold %v gives precision %v coverage %v, reported %+v", trial, target, op.Threshold, prec, cov, op)
			}
			for _, s := range scores {
				if p, _ := precisionAt(scores, correct, s); s < op.Threshold && p >= target {
					t.Fatalf("trial %d target %v: lower threshold %v also reaches %v (chose %v)", trial, target, s, p, op.Threshold)
				}
			}
			if op.Threshold < prev {
				t.Fatalf("trial %d: target %v gave threshold %v below the lower target's %v", trial, target, op.Threshold, prev)
			}
			prev = op.Threshold
		}
	}
}

func TestOOSSet(t *testing.T) {
	s := OOSSet{
		InScores:  []float64{0.9, 0.8, 0.7, 0.6, 0.2},
		InCorrect: []bool{true, true, false, true, false},
		OOSScores: []float64{0.1, 0.3, 0.65, 0.95},
	}
	p := s.At(0.65)
	want := OOSPoint{Threshold: 0.65, Accuracy: 2.0 / 5, SelectiveAccuracy: 2.0 / 3, Coverage: 3.0 / 5, OOSRecall: 2.0 / 4}
	if p != want {
		t.Errorf("At(0.65) = %+v, want %+v", p, want)
	}
	if all := s.At(s.Lowest()); all.Coverage != 1 || all.OOSRecall != 0 || all.Accuracy != 3.0/5 || all.SelectiveAccuracy != 3.0/5 {
		t.Errorf("accepting everything: %+v", all)
	}
	if none := s.At(1); none.Coverage != 0 || none.OOSRecall != 1 || none.Accuracy != 0 || none.SelectiveAccuracy != 1 {
		t.Errorf("accepting nothing: %+v", none)
	}
	c := s.Curve([]float64{0.8, 0.4})
	if len(c) != 3 || c[0].Coverage != 1 || c[1].Threshold != 0.6 || c[1].Coverage != 0.8 || c[2].Threshold != 0.8 || c[2].Coverage != 0.4 {
		t.Errorf("curve %+v", c)
	}
	// Accuracy counting abstentions as errors is at most 3/5: the best
	// recall with accuracy >= 0.6 must accept all three right ones.
	best, ok := s.Best(func(p OOSPoint) bool { return p.Accuracy >= 0.6 }, nil)
	if !ok || best.Threshold != 0.6 || best.OOSRecall != 0.5 {
		t.Errorf("best recall at accuracy >= 0.6: %+v %v, want threshold 0.6, recall 0.5", best, ok)
	}
	best, ok = s.Best(func(p OOSPoint) bool { return p.SelectiveAccuracy >= 1 && p.Coverage > 0 }, nil)
	if !ok || best.Threshold != 0.8 || best.OOSRecall != 0.75 {
		t.Errorf("best recall at selective accuracy 1: %+v %v, want threshold 0.8, recall 0.75", best, ok)
	}
	// The most coverage with OOS recall >= 0.5: the lowest such threshold.
	best, ok = s.Best(func(p OOSPoint) bool { return p.OOSRecall >= 0.5 }, func(a, b OOSPoint) bool { return a.Coverage > b.Coverage })
	if !ok || best.Threshold != 0.6 || best.Coverage != 0.8 {
		t.Errorf("most coverage at recall >= 0.5: %+v %v, want threshold 0.6, coverage 0.8", best, ok)
	}
}
