package trainer

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/featurizer"
)

// identityHead scores feature c (weight w) as class c's logit: a text's
// probabilities are set by its features alone.
func identityHead(classes int) *Linear {
	m := &Linear{NumFeatures: classes, NumClasses: classes, W: make([]float32, classes*classes), B: make([]float32, classes)}
	for c := range classes {
		m.W[c*classes+c] = 1
	}
	return m
}

// The chosen rule reaches its target on the validation rows it was chosen
// on, and the centroid score lowers texts far from their class.
func TestAbstainRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const classes, n, dim = 4, 400, 3
	var x []featurizer.Vector
	var y []int
	emb := make([]float32, 0, n*dim)
	for i := range n {
		c := i % classes
		pred, w := c, 1.5+3.5*rng.Float64()
		if rng.Float64() < 0.2 {
			// A fifth of the head's answers are wrong, and less confident.
			pred, w = (c+1)%classes, 1+1.5*rng.Float64()
		}
		x = append(x, featurizer.Vector{IDs: []int64{int64(pred)}, Weights: []float32{float32(w)}})
		y = append(y, c)
		e := make([]float32, dim)
		e[c%dim] = 1
		emb = append(emb, e...)
	}
	m := identityHead(classes)
	prev := math.Inf(-1)
	for _, target := range []float64{0.8, 0.85, 0.9, 0.95} {
		a, err := abstainRule(m, abstainInputs{x: x, y: y, temperature: 1, target: target})
		if err != nil {
			t.Fatalf("target %v: %v", target, err)
		}
		if a.Score != bundle.ScoreCalibrated || a.ClassCentroids != nil || a.TargetPrecision != target {
			t.Errorf("target %v: rule %+v", target, a)
		}
		// Recount on the validation rows: accepted predictions' precision.
		var acc, ok int
		z := make([]float32, classes)
		for i, v := range x {
			m.Scores(v, z)
			softmaxInPlace(z)
			best := m.Predict(v, make([]float32, classes))
			if float64(z[best]) >= a.Threshold {
				acc++
				if best == y[i] {
					ok++
				}
			}
		}
		prec := float64(ok) / float64(acc)
		if prec < target || math.Abs(prec-a.Precision) > 1e-9 || math.Abs(float64(acc)/n-a.Coverage) > 1e-9 {
			t.Errorf("target %v: threshold %v accepts %d at precision %v; rule says %+v", target, a.Threshold, acc, prec, a)
		}
		if a.Threshold < prev {
			t.Errorf("target %v: threshold %v below the lower target's %v", target, a.Threshold, prev)
		}
		prev = a.Threshold
	}

	// With embeddings: class centroids, and a text whose embedding is far
	// from its predicted class's centroid scores lower than a near one.
	a, err := abstainRule(m, abstainInputs{x: x, y: y, temperature: 1, target: 0.85, vaE: emb, trE: emb, trY: y, dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	if a.Score != bundle.ScoreCalibratedCentroid || len(a.ClassCentroids) != classes {
		t.Fatalf("rule with embeddings: %+v", a)
	}
	near, far := a.Of(0.9, 1, []float32{0, 1, 0}), a.Of(0.9, 1, []float32{1, 0, 0})
	if math.Abs(near-0.9) > 1e-6 || math.Abs(far-(-0.1)) > 1e-6 {
		t.Errorf("score near its centroid %v (want 0.9), far %v (want -0.1)", near, far)
	}
}

func TestClassCentroids(t *testing.T) {
	// Class 0: two embeddings of different lengths pointing the same way
	// count equally after normalisation; class 2 has none.
	emb := []float32{3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 5}
	got := classCentroids(emb, []int{0, 0, 1, 1}, 3, 3)
	s := float32(1 / math.Sqrt2)
	want := [][]float32{{s, s, 0}, {0, 0, 1}, {0, 0, 0}}
	for c := range want {
		for j := range want[c] {
			if math.Abs(float64(got[c][j]-want[c][j])) > 1e-6 {
				t.Fatalf("centroids %v, want %v", got, want)
			}
		}
	}
}

// Train writes the rule into the manifest at the default target, and none
// when it is switched off.
func TestTrainWritesAbstainRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	words := [][]string{{"invoice", "charge", "refund"}, {"parcel", "courier", "tracking"}, {"password", "login", "locked"}}
	var b strings.Builder
	b.WriteString("text,label\n")
	for i := range 300 {
		c := i % 3
		if rng.Float64() < 0.15 {
			c = rng.IntN(3) // label noise: validation accuracy below 1
		}
		fmt.Fprintf(&b, "%s %s please,%d\n", words[i%3][rng.IntN(3)], words[i%3][rng.IntN(3)], c)
	}
	data := filepath.Join(t.TempDir(), "d.csv")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []float64{0, -1} {
		res, err := Train(context.Background(), Options{DataPath: data, OutDir: filepath.Join(t.TempDir(), "m"), Seed: 1,
			LearningRates: []float64{0.2}, L2s: []float64{0}, MaxEpochs: 3, AbstainPrecision: target})
		if err != nil {
			t.Fatal(err)
		}
		a := res.Manifest.Abstain
		if target < 0 {
			if a != nil {
				t.Errorf("AbstainPrecision %v: rule %+v, want none", target, a)
			}
			continue
		}
		if a == nil || a.TargetPrecision != DefaultAbstainPrecision || a.Precision < DefaultAbstainPrecision || a.Score != bundle.ScoreCalibrated {
			t.Fatalf("default rule %+v", a)
		}
		if res.Manifest.Metrics.Validation.Accuracy < DefaultAbstainPrecision && a.Coverage >= 1 {
			t.Errorf("validation accuracy %v under the target, yet coverage %v", res.Manifest.Metrics.Validation.Accuracy, a.Coverage)
		}
		b, err := bundle.Load(res.Dir)
		if err != nil || b.Manifest.Abstain == nil || b.Manifest.Abstain.Threshold != a.Threshold {
			t.Errorf("reloaded rule %+v (%v), want %+v", b.Manifest.Abstain, err, a)
		}
	}
}
