package drift

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestCalibrate(t *testing.T) {
	p := []float64{0.7, 0.2, 0.1, 0}
	same := Calibrate(p, 1)
	for c := range p {
		if !near(same[c], p[c], 1e-12) {
			t.Fatalf("T=1 changed %v to %v", p, same)
		}
	}
	// T=2: softmax(log p / 2) ∝ sqrt(p).
	got := Calibrate([]float64{0.64, 0.36}, 2)
	if !near(got[0], 0.8/1.4, 1e-12) || !near(got[1], 0.6/1.4, 1e-12) {
		t.Errorf("T=2: %v", got)
	}
	for _, T := range []float64{0.05, 0.5, 20, 0, math.NaN()} {
		var sum float64
		for _, v := range Calibrate(p, T) {
			if math.IsNaN(v) || v < 0 {
				t.Fatalf("T=%v: %v", T, Calibrate(p, T))
			}
			sum += v
		}
		if !near(sum, 1, 1e-12) {
			t.Errorf("T=%v: sums to %v", T, sum)
		}
	}
	if got := Calibrate([]float64{1, 0, 0}, 0.05); got[0] != 1 {
		t.Errorf("one-hot at T=0.05: %v", got)
	}
}

func TestECEHandComputed(t *testing.T) {
	probs := [][]float64{{0.95, 0.05}, {0.9, 0.1}, {0.3, 0.7}, {0.6, 0.4}}
	labels := []int{0, 1, 1, 0}
	// 15 bins: 0.95 → bin 14, 0.9 → bin 13 ((0.8667,0.9333]), 0.7 → bin 10, 0.6 → bin 8.
	// Each bin holds one row: |1−0.95| + |0−0.9| + |1−0.7| + |1−0.6|, over 4.
	want := (0.05 + 0.9 + 0.3 + 0.4) / 4
	if got := ECE(probs, labels, 15); !near(got, want, 1e-12) {
		t.Errorf("ECE = %v, want %v", got, want)
	}
	// One bin: |accuracy − mean confidence|.
	if got := ECE(probs, labels, 1); !near(got, math.Abs(0.75-(0.95+0.9+0.7+0.6)/4), 1e-12) {
		t.Errorf("ECE, one bin = %v", got)
	}
	if !math.IsNaN(ECE(nil, nil, 15)) {
		t.Error("ECE of nothing should be NaN")
	}
}

// TestFitTemperatureRecoversOverconfidence draws labels from softmax(z)
// (so z are calibrated logits) and serves softmax(2.5·z): the fitted
// temperature must come out near 2.5 and ECE must drop.
func TestFitTemperatureRecoversOverconfidence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, k, sharpen = 6000, 6, 2.5
	probs := make([][]float64, n)
	labels := make([]int, n)
	for i := range probs {
		z := make([]float64, k)
		z[rng.IntN(k)] += 2
		for c := range z {
			z[c] += 1.5 * rng.NormFloat64()
		}
		truth := softmax(z)
		u := rng.Float64()
		labels[i] = k - 1
		for c, p := range truth {
			if u < p {
				labels[i] = c
				break
			}
			u -= p
		}
		for c := range z {
			z[c] *= sharpen
		}
		probs[i] = softmax(z)
	}
	T := FitTemperature(probs, labels)
	if math.Abs(T-sharpen)/sharpen > 0.05 {
		t.Errorf("fitted T = %.3f, want %.1f ± 5%%", T, sharpen)
	}
	cal := make([][]float64, n)
	for i := range probs {
		cal[i] = Calibrate(probs[i], T)
	}
	before, after := ECE(probs, labels, 15), ECE(cal, labels, 15)
	t.Logf("T = %.4f, ECE %.4f → %.4f", T, before, after)
	if before < 0.1 || after > 0.02 {
		t.Errorf("ECE %.4f → %.4f: want a large error made small (< 0.02)", before, after)
	}
	if T2 := FitTemperature(probs, labels); T2 != T {
		t.Errorf("not deterministic: %v then %v", T, T2)
	}
	// Calibrated input stays near T = 1.
	if T1 := FitTemperature(cal, labels); math.Abs(T1-1) > 0.02 {
		t.Errorf("refitting calibrated probabilities: T = %v, want ≈ 1", T1)
	}
	if FitTemperature(nil, nil) != 1 {
		t.Error("no data should give T = 1")
	}
}

func TestFitATCThreshold(t *testing.T) {
	conf := []float64{0.9, 0.5, 0.8, 0.6, 0.7}
	correct := []bool{true, false, true, true, false} // accuracy 3/5
	th := FitATCThreshold(conf, correct)
	if !near(th, 0.65, 1e-12) { // between the 3rd (0.7) and 4th (0.6) highest
		t.Errorf("threshold %v, want 0.65", th)
	}
	if got := FitATCThreshold(conf, []bool{true, true, true, true, true}); got >= 0.5 || got < 0.49 {
		t.Errorf("all correct: threshold %v, want just under the minimum", got)
	}
	if got := FitATCThreshold(conf, make([]bool, 5)); got != 0.9 {
		t.Errorf("none correct: threshold %v, want the maximum", got)
	}
}

// TestATCEstimatesAccuracy fits ATC on one sample and checks its estimate
// on fresh samples: in distribution, and under a shift that makes the
// inputs harder (less signal), where ATC was designed to work.
func TestATCEstimatesAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := defaultSynth()
	val, probs := s.sample(rng, 5000)
	labels := make([]int, len(val))
	for i := range val {
		labels[i] = val[i].True
	}
	T := FitTemperature(probs, labels)
	conf := make([]float64, len(val))
	correct := make([]bool, len(val))
	for i := range val {
		conf[i] = maxOf(Calibrate(probs[i], T))
		correct[i] = val[i].Label == val[i].True
	}
	th := FitATCThreshold(conf, correct)
	for _, c := range []struct {
		name   string
		signal float64
		tol    float64
	}{{"same distribution", 3, 0.02}, {"harder inputs", 2.4, 0.02}} {
		shifted := s
		shifted.signal = c.signal
		obs, p := shifted.sample(rng, 20000)
		above, hits, cbpe := 0, 0, 0.0
		for i := range obs {
			cc := maxOf(Calibrate(p[i], T))
			cbpe += cc
			if cc > th {
				above++
			}
			if obs[i].Label == obs[i].True {
				hits++
			}
		}
		est, acc := float64(above)/float64(len(obs)), float64(hits)/float64(len(obs))
		t.Logf("%s: accuracy %.4f, ATC %.4f, CBPE %.4f", c.name, acc, est, cbpe/float64(len(obs)))
		if math.Abs(est-acc) > c.tol {
			t.Errorf("%s: ATC estimate %.4f vs accuracy %.4f: off by more than %.2f", c.name, est, acc, c.tol)
		}
	}
}

func maxOf(p []float64) float64 {
	m := p[0]
	for _, v := range p {
		m = max(m, v)
	}
	return m
}
