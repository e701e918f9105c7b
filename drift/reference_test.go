package drift

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	testValRows = 3000
	testWindow  = 200
)

// buildSynthReference builds a reference from a validation sample of s.
func buildSynthReference(t testing.TB, s synth, seed uint64) *Reference {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	val, probs := s.sample(rng, testValRows)
	ref, err := BuildReference(labelNames(len(s.prior)), val, probs, ReferenceOptions{WindowSize: testWindow, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Validate(); err != nil {
		t.Fatalf("built reference does not validate: %v", err)
	}
	return ref
}

// windowAlarms runs count fresh windows of size from s, calibrated as the
// monitor would with ref's temperature, and returns how many alarmed and
// how often each statistic did.
func windowAlarms(ref *Reference, s synth, windows, size int, seed uint64) (int, map[string]int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := NewWindow(len(ref.Labels))
	alarms, per := 0, map[string]int{}
	for range windows {
		w.Reset()
		for range size {
			o, p := s.draw(rng)
			o.Calibrated = maxOf(Calibrate(p, ref.Temperature))
			o.True = -1 // the monitor rarely knows it
			w.Add(o)
		}
		st := w.Stats(ref)
		if st.Drift {
			alarms++
		}
		for _, a := range st.Alerts {
			per[a]++
		}
	}
	return alarms, per
}

func TestBuildReferenceMeasuresValidation(t *testing.T) {
	s := defaultSynth()
	ref := buildSynthReference(t, s, 1)
	t.Logf("T %.3f, ECE %.4f → %.4f, val accuracy %.4f, ATC threshold %.4f, bootstrap alarm rate %.4f",
		ref.Temperature, ref.ECEBefore, ref.ECEAfter, ref.ValAccuracy, ref.ATCThreshold, ref.BootstrapAlarmRate)
	if ref.Temperature < 1.3 || ref.ECEAfter >= ref.ECEBefore {
		t.Errorf("overconfident synthetic model: T %.3f, ECE %.4f → %.4f", ref.Temperature, ref.ECEBefore, ref.ECEAfter)
	}
	var sum float64
	for c, share := range ref.LabelShares {
		sum += share
		if math.Abs(share-s.prior[c]) > 0.03 {
			t.Errorf("label %d share %.3f, prior %.2f", c, share, s.prior[c])
		}
	}
	if !near(sum, 1, 1e-9) {
		t.Errorf("shares sum to %v", sum)
	}
	if ref.BootstrapAlarmRate > ref.FalseAlarmRate || ref.BootstrapAlarmRate < ref.FalseAlarmRate/2 {
		t.Errorf("bootstrap alarm rate %v, want in [%v, %v]", ref.BootstrapAlarmRate, ref.FalseAlarmRate/2, ref.FalseAlarmRate)
	}
	var names []string
	for name := range ref.Thresholds {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{StatConfidenceMean, StatEmbedDist, StatEstimatedAccuracy, StatLabelJS, StatLabelPSI,
		StatOOVRate, StatTokensMeanHigh, StatTokensMeanLow}
	if !slices.Equal(names, want) {
		t.Errorf("thresholds for %v, want %v", names, want)
	}
	for _, name := range names {
		t.Logf("  %-20s %s %.5f", name, ref.Thresholds[name].Direction, ref.Thresholds[name].Value)
	}

	again := buildSynthReference(t, s, 1)
	if !reflect.DeepEqual(ref, again) {
		t.Error("same seed, different reference")
	}

	raw, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	var back Reference
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ref, &back) {
		t.Errorf("JSON round trip changed the reference:\n%s", raw)
	}
	for _, key := range []string{`"labels"`, `"label_shares"`, `"temperature"`, `"ece_before"`, `"ece_after"`,
		`"atc_threshold"`, `"low_confidence"`, `"val_accuracy"`, `"window_size"`, `"false_alarm_rate"`,
		`"thresholds"`, `"bootstraps"`, `"direction"`, `"value"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

// TestFalseAlarmRate is the point of the calibration: fresh windows drawn
// from the validation distribution (not resampled from the validation
// split) alarm at about the target rate, while real shifts alarm nearly
// always.
func TestFalseAlarmRate(t *testing.T) {
	s := defaultSynth()
	ref := buildSynthReference(t, s, 2)
	const windows = 500
	limit := int(2 * ref.FalseAlarmRate * windows)

	alarms, per := windowAlarms(ref, s, windows, testWindow, 11)
	t.Logf("in distribution, %d windows of %d: %d alarmed (%.2f%%, target %.0f%%) %v",
		windows, testWindow, alarms, 100*float64(alarms)/windows, 100*ref.FalseAlarmRate, per)
	if alarms > limit {
		t.Errorf("%d of %d in-distribution windows alarmed, want <= %d", alarms, windows, limit)
	}
	// Windows of other sizes use rescaled thresholds (a partial window, a
	// time-closed one); the rescaling is approximate, so allow 3× there.
	for _, size := range []int{testWindow / 2, 2 * testWindow} {
		alarms, per := windowAlarms(ref, s, windows, size, 12)
		t.Logf("in distribution, %d windows of %d: %d alarmed %v", windows, size, alarms, per)
		if alarms > 3*limit/2 {
			t.Errorf("windows of %d: %d of %d alarmed, want <= %d", size, alarms, windows, 3*limit/2)
		}
	}

	for _, c := range []struct {
		name  string
		shift func(*synth)
		want  []string // at least one of these must alarm in (nearly) every window
	}{
		{"label prior shift", func(s *synth) { s.prior = []float64{0.45, 0.35, 0.2, 0, 0} },
			[]string{StatLabelPSI, StatLabelJS}},
		{"confidence drop", func(s *synth) { s.signal = 2.2 },
			[]string{StatConfidenceMean, StatEstimatedAccuracy}},
		{"longer inputs", func(s *synth) { s.tokens = 15 }, []string{StatTokensMeanHigh}},
		{"new vocabulary", func(s *synth) { s.oov = 0.08 }, []string{StatOOVRate}},
	} {
		shifted := s
		shifted.prior = slices.Clone(s.prior)
		c.shift(&shifted)
		rng := rand.New(rand.NewPCG(13, 14))
		w := NewWindow(len(ref.Labels))
		caught := 0
		for range 100 {
			w.Reset()
			for range testWindow {
				o, p := shifted.draw(rng)
				o.Calibrated = maxOf(Calibrate(p, ref.Temperature))
				w.Add(o)
			}
			st := w.Stats(ref)
			for _, a := range st.Alerts {
				if slices.Contains(c.want, a) {
					caught++
					break
				}
			}
		}
		t.Logf("%s: caught in %d of 100 windows", c.name, caught)
		if caught < 95 {
			t.Errorf("%s: caught in %d of 100 windows, want >= 95", c.name, caught)
		}
	}
}

// TestCalibrateTailsBeatsBonferroni checks the max-statistic calibration
// on known distributions: with k independent statistics each gets a tail
// of about 1 − (1 − α)^(1/k) (a little above Bonferroni's α/k), with k
// identical ones each gets α itself, and the family-wise rate is <= α.
func TestCalibrateTailsBeatsBonferroni(t *testing.T) {
	const B, k, alpha = 20000, 4, 0.05
	rng := rand.New(rand.NewPCG(5, 6))
	stats := make([]monitoredStat, k)
	for j := range stats {
		stats[j] = monitoredStat{direction: Above}
	}
	indep := make([][]float64, k)
	same := make([][]float64, k)
	shared := make([]float64, B)
	for b := range shared {
		shared[b] = rng.NormFloat64()
	}
	for j := range k {
		indep[j] = make([]float64, B)
		for b := range B {
			indep[j][b] = rng.NormFloat64()
		}
		same[j] = shared
	}
	tail := func(vals []float64, th float64) float64 {
		n := 0
		for _, v := range vals {
			if v > th {
				n++
			}
		}
		return float64(n) / float64(len(vals))
	}
	for _, c := range []struct {
		name string
		vals [][]float64
		want float64
	}{
		{"independent", indep, 1 - math.Pow(1-alpha, 1.0/k)},
		{"identical", same, alpha},
	} {
		th, rate := calibrateTails(c.vals, stats, alpha)
		got := tail(c.vals[0], th[0])
		t.Logf("%s: family-wise %.4f, per-statistic tail %.4f (want ≈ %.4f, Bonferroni %.4f)", c.name, rate, got, c.want, alpha/k)
		if rate > alpha || rate < 0.9*alpha {
			t.Errorf("%s: family-wise rate %v, want just under %v", c.name, rate, alpha)
		}
		if math.Abs(got-c.want) > 0.1*c.want {
			t.Errorf("%s: per-statistic tail %.4f, want ≈ %.4f", c.name, got, c.want)
		}
	}
}

func TestBuildReferenceWithoutEncoderOrProbs(t *testing.T) {
	s := defaultSynth()
	s.embed = false
	rng := rand.New(rand.NewPCG(8, 9))
	val, _ := s.sample(rng, 500)
	for i := range val {
		val[i].Calibrated = val[i].Confidence
	}
	ref, err := BuildReference(labelNames(len(s.prior)), val, nil, ReferenceOptions{WindowSize: 100, Bootstraps: 500})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Validate(); err != nil {
		t.Fatal(err)
	}
	if ref.HasEmbeddings || ref.EmbedDist != 0 || ref.Temperature != 1 {
		t.Errorf("has embeddings %v, embed dist %v, T %v", ref.HasEmbeddings, ref.EmbedDist, ref.Temperature)
	}
	if _, ok := ref.Thresholds[StatEmbedDist]; ok {
		t.Error("embedding threshold without embeddings")
	}
	if _, err := json.Marshal(ref); err != nil {
		t.Errorf("reference without embeddings does not marshal: %v", err)
	}
}

func TestBuildReferenceRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	val, probs := defaultSynth().sample(rng, 100)
	labels := labelNames(5)
	bad := slices.Clone(val)
	bad[7].True = 5
	for _, c := range []struct {
		name   string
		labels []string
		val    []Observation
		probs  [][]float64
		opts   ReferenceOptions
		want   string
	}{
		{"no labels", nil, val, probs, ReferenceOptions{}, "no labels"},
		{"few rows", labels, val[:10], probs[:10], ReferenceOptions{}, "10 validation rows"},
		{"probs rows", labels, val, probs[:50], ReferenceOptions{}, "50 probability rows"},
		{"true label", labels, bad, probs, ReferenceOptions{}, "row 7: true label 5"},
		{"false alarm rate", labels, val, probs, ReferenceOptions{FalseAlarmRate: 0.7}, "false alarm rate 0.7"},
		{"too few bootstraps", labels, val, probs, ReferenceOptions{Bootstraps: 100}, "use at least 500"},
		{"several at once", labels, val, probs, ReferenceOptions{WindowSize: -1, LowConfidence: 2}, "low confidence 2"},
	} {
		_, err := BuildReference(c.labels, c.val, c.probs, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

// TestValidateCatches proves the checker can fail.
func TestValidateCatches(t *testing.T) {
	ref := buildSynthReference(t, defaultSynth(), 3)
	broken := *ref
	broken.Labels = []string{"a", "a", "c", "d", "e"}
	broken.LabelShares = []float64{0.5, 0.5, 0.5, 0, 0}
	broken.Temperature = 0
	broken.Thresholds = map[string]Threshold{
		"nonsense":         {Above, 1},
		StatLabelPSI:       {Below, 0.1},
		StatConfidenceMean: {Below, math.NaN()},
	}
	err := broken.Validate()
	if err == nil {
		t.Fatal("broken reference validated")
	}
	for _, want := range []string{`"a" twice`, "sum to 1.5", "temperature 0", `unknown statistic "nonsense"`,
		`thresholds[label_psi]: direction "below"`, "thresholds[confidence_mean]: value NaN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
