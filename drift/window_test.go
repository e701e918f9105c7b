package drift

import (
	"math"
	"slices"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestPSIAndJSHandComputed(t *testing.T) {
	for _, c := range []struct {
		name     string
		p, q     []float64
		psi, js  float64
		psiOrder bool // PSI symmetric: check q,p too
	}{
		// (0.5−0.9)·ln(0.5/0.9) + (0.5−0.1)·ln(0.5/0.1)
		{"two bins", []float64{0.5, 0.5}, []float64{0.9, 0.1}, 0.8788898309344878, 0.1467931024360521, true},
		// the empty bin is clamped to 1e-4: 0.5·ln 2 + (1e-4 − 0.5)·ln(1e-4/0.5)
		{"empty bin", []float64{1, 0}, []float64{0.5, 0.5}, 4.60431846666895, 0.31127812445913283, true},
		{"identical", []float64{0.2, 0.3, 0.5}, []float64{0.2, 0.3, 0.5}, 0, 0, true},
		{"disjoint", []float64{1, 0}, []float64{0, 1}, 2 * (1 - 1e-4) * math.Log(1/1e-4), 1, true},
	} {
		if got := PSI(c.p, c.q); !near(got, c.psi, 1e-12) {
			t.Errorf("%s: PSI = %.15g, want %.15g", c.name, got, c.psi)
		}
		if got := PSI(c.q, c.p); !near(got, c.psi, 1e-12) {
			t.Errorf("%s: PSI not symmetric: %.15g", c.name, got)
		}
		if got := JensenShannon(c.p, c.q); !near(got, c.js, 1e-12) {
			t.Errorf("%s: JS = %.15g, want %.15g", c.name, got, c.js)
		}
	}
	if !math.IsNaN(PSI([]float64{1}, []float64{0.5, 0.5})) || !math.IsNaN(JensenShannon([]float64{1}, nil)) {
		t.Error("length mismatch should give NaN")
	}
}

func TestWindowStats(t *testing.T) {
	ref := &Reference{Labels: []string{"a", "b", "c"}, LabelShares: []float64{0.5, 0.5, 0}, ATCThreshold: 0.6,
		LowConfidence: 0.5}
	w := NewWindow(3)
	cal := []float64{0.9, 0.8, 0.7, 0.55, 0.4}
	for i, c := range cal {
		w.Add(Observation{Label: i % 2, Calibrated: c, Margin: 0.1 * float64(i), Tokens: 10 + i, OOVRate: 0.1,
			EmbedDist: []float64{0.2, math.NaN(), 0.4, 0.6, math.NaN()}[i], True: []int{0, -1, 1, 1, -1}[i]})
	}
	w.Add(Observation{Label: 7, Calibrated: 0.95, Tokens: 15, EmbedDist: math.NaN(), True: -1}) // label out of range
	st := w.Stats(ref)
	if st.Count != 6 || w.Count() != 6 {
		t.Fatalf("count %d/%d, want 6", st.Count, w.Count())
	}
	// Labels 0,1,0,1,0 among the five valid ones.
	if want := []float64{0.6, 0.4, 0}; !slices.EqualFunc(st.LabelShares, want, func(a, b float64) bool { return near(a, b, 1e-12) }) {
		t.Errorf("shares %v, want %v", st.LabelShares, want)
	}
	if want := PSI([]float64{0.6, 0.4, 0}, ref.LabelShares); st.LabelPSI != want {
		t.Errorf("PSI %v, want %v", st.LabelPSI, want)
	}
	all := []float64{0.4, 0.55, 0.7, 0.8, 0.9, 0.95}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"conf mean", st.ConfMean, (0.9 + 0.8 + 0.7 + 0.55 + 0.4 + 0.95) / 6},
		{"p10", st.ConfP10, all[0] + 0.5*(all[1]-all[0])}, // h = 0.5
		{"p50", st.ConfP50, (all[2] + all[3]) / 2},        // h = 2.5
		{"p90", st.ConfP90, all[4] + 0.5*(all[5]-all[4])}, // h = 4.5
		{"low share", st.LowConfShare, 1.0 / 6},
		{"ATC", st.EstAccuracyATC, 4.0 / 6}, // 0.9 0.8 0.7 0.95 > 0.6
		{"CBPE", st.EstAccuracyCBPE, st.ConfMean},
		{"true accuracy", st.TrueAccuracy, 2.0 / 3}, // rows 0 (0=0), 2 (0≠1), 3 (1=1)
		{"margin", st.MarginMean, 1.0 / 6},
		{"tokens", st.TokensMean, (10 + 11 + 12 + 13 + 14 + 15) / 6.0},
		{"oov", st.OOVRate, 0.5 / 6},
		{"embed", st.EmbedDist, 0.4},
	}
	for _, c := range checks {
		if !near(c.got, c.want, 1e-12) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if st.Labelled != 3 || st.Drift || st.Alerts != nil {
		t.Errorf("labelled %d drift %v alerts %v", st.Labelled, st.Drift, st.Alerts)
	}

	w.Reset()
	st = w.Stats(ref)
	if st.Count != 0 || !math.IsNaN(st.ConfMean) || !math.IsNaN(st.LabelPSI) || !math.IsNaN(st.TrueAccuracy) ||
		len(st.LabelShares) != 3 || st.Drift {
		t.Errorf("empty window: %+v", st)
	}
	w.Add(Observation{Label: 2, Calibrated: 0.3, True: -1, EmbedDist: math.NaN()})
	st = w.Stats(nil)
	if st.LabelShares[2] != 1 || !math.IsNaN(st.LabelPSI) || !math.IsNaN(st.EstAccuracyATC) ||
		st.LowConfShare != 1 || !math.IsNaN(st.EmbedDist) || !math.IsNaN(st.TrueAccuracy) {
		t.Errorf("after reset, no reference: %+v", st)
	}
}

func TestWindowAlerts(t *testing.T) {
	ref := &Reference{Labels: []string{"a", "b"}, LabelShares: []float64{0.5, 0.5}, ATCThreshold: 0.5,
		LowConfidence: 0.5, ConfMean: 0.8, ValAccuracy: 0.8, TokensMean: 10, ValCount: 1000, WindowSize: 4,
		Thresholds: map[string]Threshold{
			StatLabelPSI:          {Above, 0.5},
			StatConfidenceMean:    {Below, 0.7},
			StatEstimatedAccuracy: {Below, 0.6},
			StatTokensMeanHigh:    {Above, 12},
			StatTokensMeanLow:     {Below, 8},
			StatEmbedDist:         {Above, 0.5}, // the window has no distances: never alarms
		}}
	w := NewWindow(2)
	for range 4 {
		w.Add(Observation{Label: 0, Calibrated: 0.6, Tokens: 20, EmbedDist: math.NaN(), True: -1})
	}
	st := w.Stats(ref)
	want := []string{StatConfidenceMean, StatLabelPSI, StatTokensMeanHigh}
	if !slices.Equal(st.Alerts, want) || !st.Drift {
		t.Errorf("alerts %v, want %v", st.Alerts, want)
	}
}

func TestThresholdForRescales(t *testing.T) {
	ref := &Reference{ConfMean: 0.8, ValCount: 1000, WindowSize: 250, Thresholds: map[string]Threshold{
		StatConfidenceMean: {Below, 0.7}, StatLabelPSI: {Above, 0.1}}}
	if th, _ := ref.ThresholdFor(StatConfidenceMean, 250); th.Value != 0.7 {
		t.Errorf("own window size changed the threshold: %v", th.Value)
	}
	// Variance ratio for a window of 50: (1/50 + 1/1000) / (1/250 + 1/1000) = 4.2.
	g := (1/50.0 + 1/1000.0) / (1/250.0 + 1/1000.0)
	if th, _ := ref.ThresholdFor(StatConfidenceMean, 50); !near(th.Value, 0.8-0.1*math.Sqrt(g), 1e-12) {
		t.Errorf("mean threshold at 50: %v", th.Value)
	}
	if th, _ := ref.ThresholdFor(StatLabelPSI, 50); !near(th.Value, 0.1*g, 1e-12) {
		t.Errorf("PSI threshold at 50: %v", th.Value)
	}
	if _, ok := ref.ThresholdFor(StatOOVRate, 50); ok {
		t.Error("threshold for a statistic the reference lacks")
	}
	if got := ref.ThresholdsFor(50); len(got) != 2 || got[StatLabelPSI].Value != 0.1*g {
		t.Errorf("ThresholdsFor: %v", got)
	}
}
