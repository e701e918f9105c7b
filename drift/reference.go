package drift

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Threshold directions.
const (
	Above = "above"
	Below = "below"
)

// Names of the statistics that get alarm thresholds, as used in
// Reference.Thresholds and Stats.Alerts. The input length is watched in
// both directions under two one-sided names, so every threshold stays a
// single direction and value and each alert says which way it moved.
const (
	StatLabelPSI          = "label_psi"          // above
	StatLabelJS           = "label_js"           // above
	StatConfidenceMean    = "confidence_mean"    // below, mean Calibrated
	StatEstimatedAccuracy = "estimated_accuracy" // below, ATC
	StatOOVRate           = "oov_rate"           // above
	StatTokensMeanHigh    = "tokens_mean_high"   // above, mean Tokens
	StatTokensMeanLow     = "tokens_mean_low"    // below, mean Tokens
	StatEmbedDist         = "embedding_distance" // above, only with embeddings
)

// Defaults of ReferenceOptions; a zero option means its default.
const (
	DefaultWindowSize     = 500
	DefaultBootstraps     = 1000
	DefaultFalseAlarmRate = 0.01
	DefaultLowConfidence  = 0.5
)

// minReferenceRows is the smallest validation split BuildReference
// accepts: fewer rows make every reference mean and quantile noise.
const minReferenceRows = 30

// Threshold is one statistic's alarm threshold: the statistic alarms when
// strictly above (or below) Value.
type Threshold struct {
	Direction string  `json:"direction"` // "above" or "below"
	Value     float64 `json:"value"`
}

func (t Threshold) exceeded(v float64) bool {
	switch t.Direction {
	case Above:
		return v > t.Value
	case Below:
		return v < t.Value
	}
	return false // NaN compares false above too: a missing statistic never alarms
}

// Reference is built at training time and stored in the model bundle as JSON.
type Reference struct {
	Labels      []string  `json:"labels"`
	LabelShares []float64 `json:"label_shares"` // predicted-label shares on the validation split
	Temperature float64   `json:"temperature"`
	// Top-1 expected calibration error with 15 equal-width bins, before
	// and after temperature scaling.
	ECEBefore     float64 `json:"ece_before"`
	ECEAfter      float64 `json:"ece_after"`
	ATCThreshold  float64 `json:"atc_threshold"`
	LowConfidence float64 `json:"low_confidence"` // default 0.5
	ValAccuracy   float64 `json:"val_accuracy"`
	// ValCount is the validation split's size; thresholds allow for the
	// reference's own sampling error, which shrinks with it (0: unknown,
	// ThresholdFor then rescales for the window's error alone).
	ValCount int `json:"val_count"`
	// Reference means on the validation split.
	ConfMean   float64 `json:"conf_mean"` // of Calibrated
	TokensMean float64 `json:"tokens_mean"`
	OOVRate    float64 `json:"oov_rate"`
	// HasEmbeddings says EmbedDist is meaningful (JSON has no NaN, so a
	// model without an encoder stores false and 0).
	HasEmbeddings  bool                 `json:"has_embeddings"`
	EmbedDist      float64              `json:"embed_dist"`
	WindowSize     int                  `json:"window_size"`      // the window size the thresholds were bootstrapped for
	FalseAlarmRate float64              `json:"false_alarm_rate"` // target per-window probability that an in-distribution window raises any alert
	Thresholds     map[string]Threshold `json:"thresholds"`
	Bootstraps     int                  `json:"bootstraps"`
	// BootstrapAlarmRate is the share of bootstrap windows that raised
	// any alert at the calibrated thresholds before widening
	// (<= FalseAlarmRate by construction).
	BootstrapAlarmRate float64 `json:"bootstrap_alarm_rate"`
}

// monitoredStat describes one thresholded statistic.
type monitoredStat struct {
	name      string
	direction string
	// divergence marks statistics centred on 0 that grow with the
	// sampling variance (PSI, JS ≈ χ²/n); the others are means, whose
	// deviation grows with its square root.
	divergence bool
	value      func(*Stats) float64
	center     func(*Reference) float64 // the value on the whole validation split
	floor      func(*Reference) float64 // absolute widening, see widen
	applies    func(*Reference) bool
}

func always(*Reference) bool { return true }

// probFloorMargin is half a percentage point: below what anyone would act
// on for a confidence, accuracy, OOV share or cosine distance.
func probFloorMargin(*Reference) float64 { return 0.005 }

// tokensFloorMargin is 2% of the mean length (at least 0.1 token):
// tokenisation or truncation differences of that size are not drift.
func tokensFloorMargin(r *Reference) float64 { return max(0.02*r.TokensMean, 0.1) }

// divergenceFloorMargin only absorbs rounding; a divergence has no
// natural unit to be lenient in.
func divergenceFloorMargin(*Reference) float64 { return 1e-9 }

var monitoredStats = []monitoredStat{
	{name: StatLabelPSI, direction: Above, divergence: true,
		value:  func(s *Stats) float64 { return s.LabelPSI },
		center: func(*Reference) float64 { return 0 }, floor: divergenceFloorMargin, applies: always},
	{name: StatLabelJS, direction: Above, divergence: true,
		value:  func(s *Stats) float64 { return s.LabelJS },
		center: func(*Reference) float64 { return 0 }, floor: divergenceFloorMargin, applies: always},
	{name: StatConfidenceMean, direction: Below,
		value:  func(s *Stats) float64 { return s.ConfMean },
		center: func(r *Reference) float64 { return r.ConfMean }, floor: probFloorMargin, applies: always},
	{name: StatEstimatedAccuracy, direction: Below,
		value:  func(s *Stats) float64 { return s.EstAccuracyATC },
		center: func(r *Reference) float64 { return r.ValAccuracy }, floor: probFloorMargin, applies: always},
	{name: StatOOVRate, direction: Above,
		value:  func(s *Stats) float64 { return s.OOVRate },
		center: func(r *Reference) float64 { return r.OOVRate }, floor: probFloorMargin, applies: always},
	{name: StatTokensMeanHigh, direction: Above,
		value:  func(s *Stats) float64 { return s.TokensMean },
		center: func(r *Reference) float64 { return r.TokensMean }, floor: tokensFloorMargin, applies: always},
	{name: StatTokensMeanLow, direction: Below,
		value:  func(s *Stats) float64 { return s.TokensMean },
		center: func(r *Reference) float64 { return r.TokensMean }, floor: tokensFloorMargin, applies: always},
	{name: StatEmbedDist, direction: Above,
		value:  func(s *Stats) float64 { return s.EmbedDist },
		center: func(r *Reference) float64 { return r.EmbedDist }, floor: probFloorMargin,
		applies: func(r *Reference) bool { return r.HasEmbeddings }},
}

func lookupStat(name string) *monitoredStat {
	for i := range monitoredStats {
		if monitoredStats[i].name == name {
			return &monitoredStats[i]
		}
	}
	return nil
}

// varianceRatio is how much larger the variance of (window − reference)
// is for a window of count observations than for one of WindowSize: both
// the window's and the reference's sampling error, σ²(1/m + 1/n).
func (r *Reference) varianceRatio(count int) float64 {
	invN := 0.0
	if r.ValCount > 0 {
		invN = 1 / float64(r.ValCount)
	}
	return (1/float64(count) + invN) / (1/float64(r.WindowSize) + invN)
}

// ThresholdFor returns the named statistic's threshold for a window of
// count observations. Thresholds are bootstrapped for WindowSize; a
// window of another size (a partial or time-closed window) has more or
// less sampling noise, so the threshold's distance from the reference
// value is rescaled by the standard-deviation ratio for means and by the
// variance ratio for divergences (PSI and JS scale like χ²/m). It is exact
// for count == WindowSize and a large-sample approximation otherwise.
func (r *Reference) ThresholdFor(name string, count int) (Threshold, bool) {
	th, ok := r.Thresholds[name]
	m := lookupStat(name)
	if !ok || m == nil || count <= 0 || r.WindowSize <= 0 || count == r.WindowSize {
		return th, ok
	}
	g := r.varianceRatio(count)
	if m.divergence {
		th.Value *= g
	} else {
		c := m.center(r)
		th.Value = c + (th.Value-c)*math.Sqrt(g)
	}
	return th, true
}

// ThresholdsFor returns every threshold as ThresholdFor rescales it for a
// window of count observations: what Stats compared the window against.
func (r *Reference) ThresholdsFor(count int) map[string]Threshold {
	out := make(map[string]Threshold, len(r.Thresholds))
	for name := range r.Thresholds {
		out[name], _ = r.ThresholdFor(name, count)
	}
	return out
}

// ReferenceOptions tune BuildReference; a zero field takes its default.
type ReferenceOptions struct {
	WindowSize     int     // observations per monitored window (default 500)
	Bootstraps     int     // bootstrap windows (default 1000)
	FalseAlarmRate float64 // per-window family-wise false-alarm target (default 0.01)
	LowConfidence  float64 // Stats.LowConfShare's cut (default 0.5)
	Seed           uint64
}

// withDefaults fills zero fields and rejects impossible ones, all at once.
func (o ReferenceOptions) withDefaults() (ReferenceOptions, error) {
	var errs []error
	if o.WindowSize == 0 {
		o.WindowSize = DefaultWindowSize
	}
	if o.Bootstraps == 0 {
		o.Bootstraps = DefaultBootstraps
	}
	if o.FalseAlarmRate == 0 {
		o.FalseAlarmRate = DefaultFalseAlarmRate
	}
	if o.LowConfidence == 0 {
		o.LowConfidence = DefaultLowConfidence
	}
	if o.WindowSize < 1 {
		errs = append(errs, fmt.Errorf("window size %d: must be >= 1", o.WindowSize))
	}
	if o.Bootstraps < 1 {
		errs = append(errs, fmt.Errorf("bootstraps %d: must be >= 1", o.Bootstraps))
	}
	if !(o.FalseAlarmRate > 0 && o.FalseAlarmRate < 0.5) {
		errs = append(errs, fmt.Errorf("false alarm rate %v: must be in (0, 0.5)", o.FalseAlarmRate))
	} else if o.Bootstraps >= 1 && float64(o.Bootstraps)*o.FalseAlarmRate < 5 {
		// Fewer than 5 alarming bootstrap windows make the tail a guess.
		errs = append(errs, fmt.Errorf("bootstraps %d resolve a false alarm rate of %v with under 5 windows: use at least %d",
			o.Bootstraps, o.FalseAlarmRate, int(math.Ceil(5/o.FalseAlarmRate))))
	}
	if !(o.LowConfidence > 0 && o.LowConfidence < 1) {
		errs = append(errs, fmt.Errorf("low confidence %v: must be in (0, 1)", o.LowConfidence))
	}
	return o, errors.Join(errs...)
}

// BuildReference measures the validation split as the monitor will see
// it and calibrates alarm thresholds for windows of opts.WindowSize.
//
// probs holds the validation rows' full (uncalibrated) probability vectors
// for fitting the temperature; val[i].True are the validation labels and
// val[i].Calibrated is recomputed from probs with the fitted temperature.
// With probs nil the temperature is 1 and val[i].Calibrated is used as
// given (Confidence where it is 0).
//
// Thresholds: opts.Bootstraps windows of opts.WindowSize are drawn from val
// with replacement (seeded) and every monitored statistic is computed on
// each. Rather than Bonferroni (each statistic at FalseAlarmRate/k, too
// strict because PSI and JS, or confidence and ATC, move together), the
// thresholds are calibrated on the joint bootstrap distribution, as in
// Westfall & Young's (1993) max-statistic / min-p procedure: every
// statistic gets the same tail count m (its (1 − m/B) quantile in its alarm
// direction), m is the largest for which the share of bootstrap windows
// with ANY alert stays <= FalseAlarmRate, and single statistics then take
// one more step while it still does (see calibrateTails). Each threshold is
// then widened (see widen) for what the bootstrap cannot see. With 1000
// bootstraps this takes about 0.1 s for windows of 500.
func BuildReference(labels []string, val []Observation, probs [][]float64, opts ReferenceOptions) (*Reference, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("reference options: %w", err)
	}
	k, n := len(labels), len(val)
	switch {
	case k == 0:
		return nil, errors.New("build reference: no labels")
	case n < minReferenceRows:
		return nil, fmt.Errorf("build reference: %d validation rows, need at least %d", n, minReferenceRows)
	case probs != nil && len(probs) != n:
		return nil, fmt.Errorf("build reference: %d probability rows for %d validation rows", len(probs), n)
	}
	for i, o := range val {
		switch {
		case o.Label < 0 || o.Label >= k:
			return nil, fmt.Errorf("build reference: validation row %d: predicted label %d outside [0,%d)", i, o.Label, k)
		case o.True < 0 || o.True >= k:
			return nil, fmt.Errorf("build reference: validation row %d: true label %d outside [0,%d)", i, o.True, k)
		case probs != nil && len(probs[i]) != k:
			return nil, fmt.Errorf("build reference: validation row %d: %d probabilities for %d labels", i, len(probs[i]), k)
		}
	}

	obs := slices.Clone(val)
	trues := make([]int, n)
	correct := make([]bool, n)
	raw := make([]float64, n)
	for i, o := range obs {
		trues[i], correct[i], raw[i] = o.True, o.Label == o.True, o.Confidence
	}
	r := &Reference{Labels: slices.Clone(labels), LabelShares: make([]float64, k), Temperature: 1,
		LowConfidence: opts.LowConfidence, ValCount: n, WindowSize: opts.WindowSize,
		FalseAlarmRate: opts.FalseAlarmRate, Bootstraps: opts.Bootstraps}
	cal := make([]float64, n)
	if probs != nil {
		r.Temperature = FitTemperature(probs, trues)
		calProbs := make([][]float64, n)
		for i := range obs {
			calProbs[i] = Calibrate(probs[i], r.Temperature)
			cal[i] = slices.Max(calProbs[i]) // scaling keeps the arg-max
		}
		r.ECEBefore = ECE(probs, trues, DefaultECEBins)
		r.ECEAfter = ECE(calProbs, trues, DefaultECEBins)
	} else {
		for i, o := range obs {
			cal[i] = o.Calibrated
			if cal[i] == 0 {
				cal[i] = o.Confidence
			}
		}
		r.ECEBefore = eceTop1(raw, correct, DefaultECEBins)
		r.ECEAfter = eceTop1(cal, correct, DefaultECEBins)
	}
	hits := 0
	for i := range obs {
		obs[i].Calibrated = cal[i]
		if correct[i] {
			hits++
		}
	}
	r.ValAccuracy = float64(hits) / float64(n)
	r.ATCThreshold = FitATCThreshold(cal, correct)

	whole := NewWindow(k)
	for _, o := range obs {
		whole.Add(o)
	}
	ws := whole.stats(nil, false)
	r.LabelShares, r.ConfMean, r.TokensMean, r.OOVRate = ws.LabelShares, ws.ConfMean, ws.TokensMean, ws.OOVRate
	if r.HasEmbeddings = !math.IsNaN(ws.EmbedDist); r.HasEmbeddings {
		r.EmbedDist = ws.EmbedDist
	}

	var stats []monitoredStat
	for _, m := range monitoredStats {
		if m.applies(r) {
			stats = append(stats, m)
		}
	}
	vals := bootstrap(r, obs, stats, opts.Seed)
	thr, rate := calibrateTails(vals, stats, r.FalseAlarmRate)
	r.BootstrapAlarmRate = rate
	r.Thresholds = make(map[string]Threshold, len(stats))
	for j, m := range stats {
		if v := widen(r, m, thr[j]); !math.IsNaN(v) { // NaN: never finite on any bootstrap window
			r.Thresholds[m.name] = Threshold{Direction: m.direction, Value: v}
		}
	}
	return r, nil
}

// bootstrap returns vals[j][b]: statistic j on bootstrap window b.
func bootstrap(r *Reference, obs []Observation, stats []monitoredStat, seed uint64) [][]float64 {
	vals := make([][]float64, len(stats))
	for j := range vals {
		vals[j] = make([]float64, r.Bootstraps)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6472696674626f6f)) // "driftboo": a stream of its own
	w := NewWindow(len(r.Labels))
	for b := range r.Bootstraps {
		w.Reset()
		for range r.WindowSize {
			w.Add(obs[rng.IntN(len(obs))])
		}
		st := w.stats(r, false)
		for j, m := range stats {
			vals[j][b] = m.value(&st)
		}
	}
	return vals
}

// calibrateTails picks, for every statistic, the threshold that leaves
// m_j bootstrap windows strictly beyond it in its alarm direction (fewer
// under ties), such that the share of windows raising any alert is <= far.
// All statistics first get the largest common m; then, since one step of
// m can add up to k alarming windows and overshoot, single statistics take
// one more step in turn while the rate stays <= far. It returns the
// thresholds and the achieved share.
func calibrateTails(vals [][]float64, stats []monitoredStat, far float64) ([]float64, float64) {
	B := len(vals[0])
	// ordered[j][i] is the (i+1)-th most extreme finite value of statistic j.
	ordered := make([][]float64, len(stats))
	for j, m := range stats {
		for _, v := range vals[j] {
			if !math.IsNaN(v) {
				ordered[j] = append(ordered[j], v)
			}
		}
		slices.Sort(ordered[j])
		if m.direction == Above {
			slices.Reverse(ordered[j])
		}
	}
	thresholds := func(ms []int) []float64 {
		t := make([]float64, len(stats))
		for j := range stats {
			if len(ordered[j]) == 0 {
				t[j] = math.NaN() // never observed: no alarm (NaN compares false)
				continue
			}
			t[j] = ordered[j][min(ms[j], len(ordered[j])-1)]
		}
		return t
	}
	rate := func(ms []int) float64 {
		t := thresholds(ms)
		alarms := 0
		for b := range B {
			for j, m := range stats {
				if (Threshold{Direction: m.direction, Value: t[j]}).exceeded(vals[j][b]) {
					alarms++
					break
				}
			}
		}
		return float64(alarms) / float64(B)
	}
	common := func(m int) []int {
		ms := make([]int, len(stats))
		for j := range ms {
			ms[j] = m
		}
		return ms
	}
	// m = 0 puts every threshold at its most extreme value: nothing is
	// strictly beyond, so the rate is 0. The rate only grows with m.
	lo, hi := 0, B-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if rate(common(mid)) <= far {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	ms := common(lo)
	for grew := true; grew; {
		grew = false
		for j := range ms {
			if ms[j]+1 >= B {
				continue
			}
			ms[j]++
			if rate(ms) <= far {
				grew = true
			} else {
				ms[j]--
			}
		}
	}
	return thresholds(ms), rate(ms)
}

// widen moves a calibrated threshold away from the reference value, so a
// stream drawn from the validation distribution, sampled a little
// differently, does not alarm:
//
//   - The bootstrap resamples the validation split, whose empirical
//     distribution is exactly the reference; a live window also differs
//     from the reference by the reference's own sampling error. For a mean,
//     Var(window − reference) = σ²(1/W + 1/n) against the bootstrap's σ²/W,
//     so the deviation is scaled by √(1 + W/n); divergences scale with the
//     variance, by (1 + W/n).
//     Without it, fresh in-distribution windows alarmed at 3–4.5× the
//     target rate in tests with W/n = 1/4.
//   - A small absolute floor per statistic (half a point of probability,
//     2% of the mean length): the correction is right on average over
//     references, but one reference whose mean landed 3σ off would alarm
//     on a tenth of clean windows; and a statistic that hardly varied on
//     the validation split (an OOV share of 0) would alarm on any change.
func widen(r *Reference, m monitoredStat, t float64) float64 {
	if math.IsNaN(t) {
		return t
	}
	inflate := 1 + float64(r.WindowSize)/float64(r.ValCount)
	c := m.center(r)
	dev := t - c
	if m.direction == Below {
		dev = -dev
	}
	dev = max(dev, 0) // with a tiny window a tail quantile can fall on the centre's far side
	if m.divergence {
		dev *= inflate
	} else {
		dev *= math.Sqrt(inflate)
	}
	dev += m.floor(r)
	if m.direction == Below {
		return c - dev
	}
	return c + dev
}

// Validate reports every problem of a reference at once.
func (r *Reference) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	k := len(r.Labels)
	if k == 0 {
		add("labels: none")
	}
	seen := make(map[string]bool, k)
	for _, l := range r.Labels {
		if seen[l] {
			add("labels: %q twice", l)
		}
		seen[l] = true
	}
	if len(r.LabelShares) != k {
		add("label_shares: %d shares for %d labels", len(r.LabelShares), k)
	} else if k > 0 {
		var sum float64
		for i, s := range r.LabelShares {
			if !(s >= 0 && s <= 1) {
				add("label_shares[%d] %v: must be in [0,1]", i, s)
			}
			sum += s
		}
		if math.Abs(sum-1) > 1e-6 {
			add("label_shares sum to %v, not 1", sum)
		}
	}
	if !(r.Temperature >= minTemperature && r.Temperature <= maxTemperature) {
		add("temperature %v: must be in [%v,%v]", r.Temperature, minTemperature, maxTemperature)
	}
	for name, v := range map[string]float64{"ece_before": r.ECEBefore, "ece_after": r.ECEAfter,
		"atc_threshold": r.ATCThreshold, "val_accuracy": r.ValAccuracy, "conf_mean": r.ConfMean, "oov_rate": r.OOVRate} {
		if !(v >= 0 && v <= 1) {
			add("%s %v: must be in [0,1]", name, v)
		}
	}
	if !(r.LowConfidence > 0 && r.LowConfidence < 1) {
		add("low_confidence %v: must be in (0,1)", r.LowConfidence)
	}
	if !(r.TokensMean >= 0) || math.IsInf(r.TokensMean, 0) {
		add("tokens_mean %v: must be a finite number >= 0", r.TokensMean)
	}
	if !(r.EmbedDist >= 0 && r.EmbedDist <= 2) { // cosine distance
		add("embed_dist %v: must be in [0,2]", r.EmbedDist)
	}
	if r.ValCount < 0 {
		add("val_count %d: must be >= 0 (0: unknown)", r.ValCount)
	}
	if r.WindowSize < 1 {
		add("window_size %d: must be >= 1", r.WindowSize)
	}
	if !(r.FalseAlarmRate > 0 && r.FalseAlarmRate < 0.5) {
		add("false_alarm_rate %v: must be in (0,0.5)", r.FalseAlarmRate)
	}
	if r.Bootstraps < 1 {
		add("bootstraps %d: must be >= 1", r.Bootstraps)
	}
	names := make([]string, 0, len(r.Thresholds))
	for name := range r.Thresholds {
		names = append(names, name)
	}
	slices.Sort(names) // errors in a stable order
	for _, name := range names {
		th := r.Thresholds[name]
		m := lookupStat(name)
		switch {
		case m == nil:
			add("thresholds: unknown statistic %q", name)
		case th.Direction != m.direction:
			add("thresholds[%s]: direction %q, want %q", name, th.Direction, m.direction)
		case math.IsNaN(th.Value) || math.IsInf(th.Value, 0):
			add("thresholds[%s]: value %v is not a finite number", name, th.Value)
		case !m.applies(r):
			add("thresholds[%s]: reference has no embeddings", name)
		}
	}
	return errors.Join(errs...)
}
