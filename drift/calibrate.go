package drift

import (
	"math"
	"slices"
)

// probFloor replaces probabilities below it before taking logs: float32
// softmax outputs underflow to exactly 0, and log 0 would give one example
// an infinite loss (or NaN after subtracting the maximum).
const probFloor = 1e-30

// Temperature search range (Guo et al. 2017 report fitted T between about
// 1 and 3 for modern networks; the range leaves room for under-confident
// linear models too).
const (
	minTemperature = 0.05
	maxTemperature = 20
)

// FitTemperature fits temperature scaling (Guo et al. 2017, "On
// Calibration of Modern Neural Networks"): the single T > 0 minimising the
// negative log-likelihood of labels under softmax(log p / T). Served models
// output probabilities, and log p equals the logits up to a per-row
// constant, which softmax ignores, so this is exactly Guo's method.
//
// The NLL is convex in 1/T, hence unimodal in log T, so a golden-section
// search on log T over [0.05, 20] with a fixed number of steps finds the
// minimum deterministically. Rows whose label is not an index into the row
// are skipped; with no usable row it returns 1 (no scaling).
func FitTemperature(probs [][]float64, labels []int) float64 {
	n := min(len(probs), len(labels))
	logp := make([][]float64, 0, n)
	ys := make([]int, 0, n)
	for i := range n {
		if labels[i] < 0 || labels[i] >= len(probs[i]) {
			continue
		}
		row := make([]float64, len(probs[i]))
		for c, p := range probs[i] {
			row[c] = safeLog(p)
		}
		logp = append(logp, row)
		ys = append(ys, labels[i])
	}
	if len(logp) == 0 {
		return 1
	}
	nll := func(logT float64) float64 {
		beta := math.Exp(-logT)
		var s float64
		for i, row := range logp {
			mx := math.Inf(-1)
			for _, l := range row {
				mx = max(mx, l)
			}
			var z float64
			for _, l := range row {
				z += math.Exp(beta * (l - mx))
			}
			s += math.Log(z) - beta*(row[ys[i]]-mx)
		}
		return s / float64(len(logp))
	}
	// 48 steps shrink the bracket (width ln 400 ≈ 6) by 0.618^48 ≈ 1e-10.
	const invPhi = 0.6180339887498949
	a, b := math.Log(minTemperature), math.Log(maxTemperature)
	c, d := b-invPhi*(b-a), a+invPhi*(b-a)
	fc, fd := nll(c), nll(d)
	for range 48 {
		if fc <= fd {
			b, d, fd = d, c, fc
			c = b - invPhi*(b-a)
			fc = nll(c)
		} else {
			a, c, fc = c, d, fd
			d = a + invPhi*(b-a)
			fd = nll(d)
		}
	}
	return math.Exp((a + b) / 2)
}

func safeLog(p float64) float64 {
	if !(p >= probFloor) { // also catches NaN
		p = probFloor
	}
	return math.Log(p)
}

// Calibrate returns softmax(log p / T): the temperature-scaled version of
// probabilities p. Zero (or NaN) probabilities are floored at 1e-30 first;
// a T that is not a positive finite number is taken as 1.
func Calibrate(probs []float64, T float64) []float64 {
	out := make([]float64, len(probs))
	if len(probs) == 0 {
		return out
	}
	if !(T > 0) || math.IsInf(T, 0) {
		T = 1
	}
	mx := math.Inf(-1)
	for c, p := range probs {
		out[c] = safeLog(p) / T
		mx = max(mx, out[c])
	}
	var z float64
	for c := range out {
		out[c] = math.Exp(out[c] - mx)
		z += out[c]
	}
	for c := range out {
		out[c] /= z
	}
	return out
}

// DefaultECEBins is the bin count of the reference's ECE (as in Guo et al.).
const DefaultECEBins = 15

// ECE is the expected calibration error of the top-1 prediction (Naeini et
// al. 2015; Guo et al. 2017): rows are grouped into bins equal-width bins
// of top-1 probability ((m−1)/M, m/M]), and ECE = Σ |B|/n · |acc(B) − conf(B)|.
// Rows with a label outside the row are skipped; bins < 1 means 15; NaN
// when no row is usable.
func ECE(probs [][]float64, labels []int, bins int) float64 {
	n := min(len(probs), len(labels))
	conf := make([]float64, 0, n)
	correct := make([]bool, 0, n)
	for i := range n {
		if labels[i] < 0 || labels[i] >= len(probs[i]) {
			continue
		}
		best := 0
		for c, p := range probs[i] {
			if p > probs[i][best] {
				best = c
			}
		}
		conf = append(conf, probs[i][best])
		correct = append(correct, best == labels[i])
	}
	return eceTop1(conf, correct, bins)
}

// eceTop1 is ECE from top-1 confidences and their correctness.
func eceTop1(conf []float64, correct []bool, bins int) float64 {
	if bins < 1 {
		bins = DefaultECEBins
	}
	if len(conf) == 0 {
		return math.NaN()
	}
	sumConf := make([]float64, bins)
	hits := make([]int, bins)
	count := make([]int, bins)
	for i, c := range conf {
		b := int(math.Ceil(c*float64(bins))) - 1
		b = min(max(b, 0), bins-1)
		sumConf[b] += c
		count[b]++
		if correct[i] {
			hits[b]++
		}
	}
	var e float64
	for b := range bins {
		if count[b] > 0 {
			e += math.Abs(float64(hits[b])-sumConf[b]) / float64(len(conf))
		}
	}
	return e
}

// FitATCThreshold fits Average Thresholded Confidence (Garg et al. 2022):
// the threshold t for which the share of validation examples with
// calibrated confidence > t equals the validation accuracy. A window's
// share above t then estimates its accuracy without labels.
//
// With n examples of which k (the correct ones) must lie above, t is the
// midpoint between the k-th and (k+1)-th highest confidence; tied
// confidences can leave the share above t slightly under the accuracy.
// NaN when there are no examples.
func FitATCThreshold(calibratedConf []float64, correct []bool) float64 {
	n := min(len(calibratedConf), len(correct))
	if n == 0 {
		return math.NaN()
	}
	hits := 0
	for _, ok := range correct[:n] {
		if ok {
			hits++
		}
	}
	desc := slices.Clone(calibratedConf[:n])
	slices.Sort(desc)
	slices.Reverse(desc)
	k := hits
	switch k {
	case 0:
		return desc[0] // nothing is strictly above the maximum
	case n:
		return math.Nextafter(desc[n-1], math.Inf(-1))
	}
	return (desc[k-1] + desc[k]) / 2
}
