package bundle

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// A rule round-trips through model.json; a rule that does not fit the
// bundle is refused on load rather than served.
func TestAbstainLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	m, v, onnx := fixture(t, "v1")
	m.Abstain = &Abstain{Score: ScoreCalibrated, Threshold: 0.61, TargetPrecision: 0.97, Precision: 0.971, Coverage: 0.88}
	if err := Write(dir, m, v, onnx); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a := b.Manifest.Abstain; a == nil || a.Threshold != 0.61 || a.Score != ScoreCalibrated || a.Coverage != 0.88 {
		t.Errorf("loaded rule %+v", b.Manifest.Abstain)
	}
	for _, c := range []struct {
		rule *Abstain
		want string
	}{
		{&Abstain{Score: "entropy", Threshold: 0.5}, "unknown score"},
		{&Abstain{Score: ScoreCalibratedCentroid, Threshold: 0.5}, "needs an encoder"}, // a linear bundle
		{&Abstain{Score: ScoreCalibrated, Threshold: 0.5, ClassCentroids: [][]float32{{1}}}, "class centroids"},
	} {
		m, v, onnx := fixture(t, "v1")
		m.Abstain = c.rule
		if err := Write(dir, m, v, onnx); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rule %+v: load error %v, want one saying %q", c.rule, err, c.want)
		}
	}
}

func TestAbstainScore(t *testing.T) {
	var none *Abstain
	if none.Abstains(0) {
		t.Error("a bundle without a rule abstained")
	}
	a := &Abstain{Score: ScoreCalibratedCentroid, Threshold: 0.5, ClassCentroids: [][]float32{{1, 0}, {0, 1}}}
	for _, c := range []struct {
		cal   float64
		label int
		emb   []float32
		want  float64
	}{
		{0.9, 0, []float32{2, 0}, 0.9},  // on its centroid
		{0.9, 1, []float32{2, 0}, -0.1}, // orthogonal to it
		{0.9, 1, []float32{1, 1}, 0.9 - (1 - 1/math.Sqrt2)},
		{0.9, 1, nil, -0.1},            // no embedding counts as far
		{0.9, 5, []float32{1, 0}, 0.9}, // unknown label: probability alone
	} {
		if got := a.Of(c.cal, c.label, c.emb); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Of(%v, %d, %v) = %v, want %v", c.cal, c.label, c.emb, got, c.want)
		}
	}
	if !a.Abstains(0.49) || a.Abstains(0.5) {
		t.Error("Abstains: want score < threshold")
	}
	cal := &Abstain{Score: ScoreCalibrated, Threshold: 0.5}
	if got := cal.Of(0.7, 0, []float32{1, 0}); got != 0.7 {
		t.Errorf("calibrated score %v, want the probability 0.7", got)
	}
}
