// Package drift holds the statistics for watching a classifier on a stream
// without labels: per-window summaries of its predictions and inputs, a
// reference measured on the validation split at training time (label
// shares, calibration, alarm thresholds), and a domain-classifier test on
// raw texts. It is pure computation: no I/O, no clocks, no globals.
package drift

import (
	"math"
	"slices"
)

// Observation is what one prediction contributes.
type Observation struct {
	Label      int     // predicted class index into the model's labels
	Confidence float64 // top-1 probability as served (uncalibrated)
	Calibrated float64 // top-1 probability after temperature scaling
	Margin     float64 // top-1 minus top-2 probability (as served)
	Tokens     int     // input length in tokens
	OOVRate    float64 // share of the input's n-grams/word pieces unseen in training, 0..1
	EmbedDist  float64 // cosine distance of the embedding to the training centroid; NaN when the model has no encoder
	True       int     // true class index when a human label is known, else -1
}

// Window accumulates observations (not safe for concurrent use). It keeps
// running sums plus the calibrated confidences, which quantiles and the
// reference's thresholds (ATC, low confidence) need one by one.
type Window struct {
	counts  []int // predicted-label counts
	outside int   // observations whose Label is not a class index
	conf    []float64
	sumConf float64 // of Calibrated
	margin  float64
	tokens  float64
	oov     float64
	embed   float64
	nEmbed  int // observations with a finite EmbedDist
	labeled int
	correct int
}

// NewWindow returns an empty window for a model with numLabels classes.
func NewWindow(numLabels int) *Window {
	return &Window{counts: make([]int, max(numLabels, 0))}
}

// Add records one prediction. A Label outside [0, numLabels) still counts
// toward every other statistic but not toward the label shares.
func (w *Window) Add(o Observation) {
	if o.Label >= 0 && o.Label < len(w.counts) {
		w.counts[o.Label]++
	} else {
		w.outside++
	}
	w.conf = append(w.conf, o.Calibrated)
	w.sumConf += o.Calibrated
	w.margin += o.Margin
	w.tokens += float64(o.Tokens)
	w.oov += o.OOVRate
	// A NaN distance is "no encoder" or a zero embedding (empty text);
	// either way it says nothing about the centroid.
	if !math.IsNaN(o.EmbedDist) && !math.IsInf(o.EmbedDist, 0) {
		w.embed += o.EmbedDist
		w.nEmbed++
	}
	if o.True >= 0 {
		w.labeled++
		if o.True == o.Label {
			w.correct++
		}
	}
}

// Count is the number of observations added since the last Reset.
func (w *Window) Count() int { return len(w.conf) }

// Reset empties the window, keeping its memory, for the next tumbling window.
func (w *Window) Reset() {
	clear(w.counts)
	*w = Window{counts: w.counts, conf: w.conf[:0]}
}

// Stats summarises one window against a reference.
type Stats struct {
	Count        int
	LabelShares  []float64 // per class, sums to 1 (all 0 when no observation has a valid label)
	LabelPSI     float64   // vs ref.LabelShares; shares clamped to PSIEpsilon (see PSI); NaN without a matching reference
	LabelJS      float64   // Jensen–Shannon divergence (base 2, in [0,1]); NaN without a matching reference
	ConfMean     float64   // of Calibrated
	ConfP10      float64
	ConfP50      float64
	ConfP90      float64
	LowConfShare float64 // share of Calibrated < ref.LowConfidence
	MarginMean   float64
	// EstAccuracyATC is Average Thresholded Confidence (Garg et al. 2022,
	// "Leveraging Unlabeled Data to Predict Out-of-Distribution
	// Performance"): the share of Calibrated above ref.ATCThreshold.
	EstAccuracyATC float64
	// EstAccuracyCBPE is the mean Calibrated confidence: with calibrated
	// probabilities the expected accuracy (confidence-based performance
	// estimation, as NannyML's CBPE).
	EstAccuracyCBPE float64
	TrueAccuracy    float64 // over observations with True >= 0; NaN when none
	Labelled        int
	TokensMean      float64
	OOVRate         float64
	EmbedDist       float64  // mean over finite distances, NaN when none
	Alerts          []string // names of statistics beyond their threshold (Reference.ThresholdsFor(Count)), sorted
	Drift           bool     // len(Alerts) > 0
}

// Stats computes the window's statistics against ref and raises an alert
// for each statistic beyond its threshold, rescaled to the window's count
// (see Reference.ThresholdsFor). With a nil ref the statistics that need one
// are NaN and nothing alerts; an empty window has NaN means and no alerts.
func (w *Window) Stats(ref *Reference) Stats {
	st := w.stats(ref, true)
	if ref == nil || st.Count == 0 {
		return st
	}
	for _, m := range monitoredStats {
		th, ok := ref.ThresholdFor(m.name, st.Count)
		if ok && th.exceeded(m.value(&st)) {
			st.Alerts = append(st.Alerts, m.name)
		}
	}
	slices.Sort(st.Alerts)
	st.Drift = len(st.Alerts) > 0
	return st
}

// stats computes everything but alerts; quantiles (a sort) are skipped
// when bootstrapping, which needs only the monitored statistics.
func (w *Window) stats(ref *Reference, quantiles bool) Stats {
	n := len(w.conf)
	nan := math.NaN()
	st := Stats{Count: n, LabelShares: make([]float64, len(w.counts)), LabelPSI: nan, LabelJS: nan,
		ConfMean: nan, ConfP10: nan, ConfP50: nan, ConfP90: nan, LowConfShare: nan, MarginMean: nan,
		EstAccuracyATC: nan, EstAccuracyCBPE: nan, TrueAccuracy: nan, Labelled: w.labeled,
		TokensMean: nan, OOVRate: nan, EmbedDist: nan}
	if valid := n - w.outside; valid > 0 {
		for c, k := range w.counts {
			st.LabelShares[c] = float64(k) / float64(valid)
		}
	}
	if n == 0 {
		return st
	}
	fn := float64(n)
	st.ConfMean = w.sumConf / fn
	st.EstAccuracyCBPE = st.ConfMean
	st.MarginMean = w.margin / fn
	st.TokensMean = w.tokens / fn
	st.OOVRate = w.oov / fn
	if w.nEmbed > 0 {
		st.EmbedDist = w.embed / float64(w.nEmbed)
	}
	if w.labeled > 0 {
		st.TrueAccuracy = float64(w.correct) / float64(w.labeled)
	}
	low := DefaultLowConfidence
	if ref != nil {
		if len(ref.LabelShares) == len(st.LabelShares) && n > w.outside {
			st.LabelPSI = PSI(st.LabelShares, ref.LabelShares)
			st.LabelJS = JensenShannon(st.LabelShares, ref.LabelShares)
		}
		if ref.LowConfidence > 0 {
			low = ref.LowConfidence
		}
		above := 0
		for _, c := range w.conf {
			if c > ref.ATCThreshold {
				above++
			}
		}
		st.EstAccuracyATC = float64(above) / fn
	}
	lowN := 0
	for _, c := range w.conf {
		if c < low {
			lowN++
		}
	}
	st.LowConfShare = float64(lowN) / fn
	if quantiles {
		// Sorting in place is harmless: order carries no meaning here.
		slices.Sort(w.conf)
		st.ConfP10 = quantileSorted(w.conf, 0.1)
		st.ConfP50 = quantileSorted(w.conf, 0.5)
		st.ConfP90 = quantileSorted(w.conf, 0.9)
	}
	return st
}

// quantileSorted interpolates linearly between order statistics (type 7 of
// Hyndman & Fan 1996, the default of R and NumPy).
func quantileSorted(x []float64, q float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	h := q * float64(len(x)-1)
	lo := int(math.Floor(h))
	if lo >= len(x)-1 {
		return x[len(x)-1]
	}
	return x[lo] + (h-float64(lo))*(x[lo+1]-x[lo])
}

// PSIEpsilon is the floor each share is clamped to before the PSI's
// logarithm: an empty bin would otherwise make the index infinite. 1e-4
// is the customary choice (e.g. in credit-scoring practice and NannyML);
// shares are not renormalised afterwards.
const PSIEpsilon = 1e-4

// PSI is the population stability index Σ (a_i − e_i) ln(a_i / e_i) of
// shares a against reference shares e (symmetric in a and e), with every
// share clamped to at least PSIEpsilon. It is NaN when the lengths differ.
func PSI(actual, expected []float64) float64 {
	if len(actual) != len(expected) {
		return math.NaN()
	}
	var s float64
	for i := range actual {
		a, e := max(actual[i], PSIEpsilon), max(expected[i], PSIEpsilon)
		s += (a - e) * math.Log(a/e)
	}
	return s
}

// JensenShannon is the Jensen–Shannon divergence of two distributions in
// bits, so in [0, 1]; empty bins need no epsilon since 0·log 0 = 0. It is
// NaN when the lengths differ.
func JensenShannon(p, q []float64) float64 {
	if len(p) != len(q) {
		return math.NaN()
	}
	var s float64
	for i := range p {
		m := (p[i] + q[i]) / 2
		if p[i] > 0 {
			s += p[i] * math.Log2(p[i]/m)
		}
		if q[i] > 0 {
			s += q[i] * math.Log2(q[i]/m)
		}
	}
	// Rounding can leave a hair below 0 or above 1.
	return min(max(s/2, 0), 1)
}
