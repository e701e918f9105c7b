package trainer

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/internal/dataset"
)

// fakeTeacher answers the same distribution, in its own label order, for
// every text.
type fakeTeacher struct {
	man   bundle.Manifest
	probs []float32
	calls int
}

func (f *fakeTeacher) Manifest() bundle.Manifest { return f.man }

func (f *fakeTeacher) Distribution(_ context.Context, texts []string) ([]float32, error) {
	f.calls++
	var out []float32
	for range texts {
		out = append(out, f.probs...)
	}
	return out, nil
}

func TestTeacherDistributionReordersAndChecksTheSplit(t *testing.T) {
	ds := &dataset.Dataset{SHA256: "abc"}
	train := []dataset.Example{{Text: "a", Label: "neg"}, {Text: "b", Label: "pos"}}
	// The teacher lists its labels the other way round.
	teach := &fakeTeacher{man: bundle.Manifest{Name: "t", Labels: []string{"pos", "neg"},
		Training: bundle.Training{DataSHA256: "abc", Seed: 7, ValFraction: 0.1, TrainRows: 2}}, probs: []float32{0.8, 0.2}}
	opts := Options{Seed: 7, ValFraction: 0.1, Distill: &Distill{Teacher: teach}, Logger: slog.New(slog.DiscardHandler)}
	got, err := teacherDistribution(context.Background(), opts, ds, []string{"neg", "pos"}, train)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{0.2, 0.8, 0.2, 0.8}) {
		t.Fatalf("distribution %v, want the teacher's in this run's label order", got)
	}

	teach.man.Training.Seed = 8
	if _, err := teacherDistribution(context.Background(), opts, ds, []string{"neg", "pos"}, train); err == nil ||
		!strings.Contains(err.Error(), "another split") {
		t.Fatalf("teacher of another split: err = %v", err)
	}
	teach.man.Training.Seed = 7
	if _, err := teacherDistribution(context.Background(), opts, ds, []string{"neg", "other"}, train); err == nil ||
		!strings.Contains(err.Error(), "labels") {
		t.Fatalf("teacher with other labels: err = %v", err)
	}
}

func TestSoftTargetsMixAndSoften(t *testing.T) {
	// Teacher neg 0.2, pos 0.8; softened at T=2: pos ∝ 0.8^0.5, neg ∝ 0.2^0.5,
	// so pos 2/3, neg 1/3; mixed half and half with the gold label.
	got := softTargets([]float32{0.2, 0.8, 0.2, 0.8}, []int{0, 1}, 2, distillSetting{weight: 0.5, temperature: 2})
	want := []float32{0.5 + 0.5/3, 0.5 * 2 / 3, 0.5 / 3, 0.5 + 0.5*2/3}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("targets %v, want %v", got, want)
		}
	}
}

func TestLossGradientSoftTarget(t *testing.T) {
	z := []float32{1, 0, -1}
	p := slices.Clone(z)
	softmaxInPlace(p)
	soft := []float32{0.2, 0.3, 0.5}
	if !lossGradient(LossLogistic, z, 0, soft) {
		t.Fatal("soft target gave no gradient")
	}
	for c := range z {
		if math.Abs(float64(z[c]-(p[c]-soft[c]))) > 1e-6 {
			t.Fatalf("gradient %v, want softmax - target = %v - %v", z, p, soft)
		}
	}
}

// TestTrainDistilsFromTheTeacher: a teacher that always says "account"
// with full weight pulls the head away from the labels (so the soft
// targets are what it learns), and the bundle records the teacher.
func TestTrainDistilsFromTheTeacher(t *testing.T) {
	data := synthetic(t, "d.csv", "text", "label", false)
	base := Options{DataPath: data, Seed: 3, LearningRates: []float64{0.2}, L2s: []float64{0}, MaxEpochs: 6}
	plain := base
	plain.OutDir = filepath.Join(t.TempDir(), "plain")
	res, err := Train(context.Background(), plain)
	if err != nil {
		t.Fatal(err)
	}
	if acc := res.Manifest.Metrics.Validation.Accuracy; acc < 0.9 {
		t.Fatalf("without a teacher: validation accuracy %.3f < 0.9", acc)
	}
	teach := &fakeTeacher{man: bundle.Manifest{Name: "teacher", Version: "v1",
		Labels: []string{"shipping", "billing", "account"}, Training: res.Manifest.Training}, probs: []float32{0, 0, 1}}

	wrong := base
	wrong.OutDir = filepath.Join(t.TempDir(), "wrong")
	wrong.Distill = &Distill{Teacher: teach, Source: "teacher-dir", Weights: []float64{1}, Temperatures: []float64{1}}
	res, err = Train(context.Background(), wrong)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if acc := m.Metrics.Validation.Accuracy; acc > 0.5 {
		t.Errorf("a teacher with weight 1 that always says account: validation accuracy %.3f, want about 1/3", acc)
	}
	if m.HyperParams["distill_from"] != "teacher-dir" || m.HyperParams["distill_weight"] != 1.0 || teach.calls == 0 {
		t.Errorf("hyper params %v, teacher calls %d", m.HyperParams, teach.calls)
	}

	// Several settings are searched on one run of the teacher, and the
	// validation score picks: a little of the wrong teacher beats all of it.
	calls := teach.calls
	mixed := base
	mixed.OutDir = filepath.Join(t.TempDir(), "mixed")
	mixed.Distill = &Distill{Teacher: teach, Weights: []float64{0.1, 1}, Temperatures: []float64{1, 2}}
	if res, err = Train(context.Background(), mixed); err != nil {
		t.Fatal(err)
	}
	m = res.Manifest
	if len(m.Metrics.Search) != 4 || m.HyperParams["distill_weight"] != 0.1 || teach.calls-calls != calls {
		t.Errorf("search of 4 settings: %d trials, chose weight %v, teacher called %d times (one setting: %d)",
			len(m.Metrics.Search), m.HyperParams["distill_weight"], teach.calls-calls, calls)
	}
	if acc := m.Metrics.Validation.Accuracy; acc < 0.9 {
		t.Errorf("chosen setting: validation accuracy %.3f < 0.9", acc)
	}

	hinge := base
	hinge.OutDir = filepath.Join(t.TempDir(), "hinge")
	hinge.Losses = []string{LossHinge}
	hinge.Distill = &Distill{Teacher: teach}
	if _, err := Train(context.Background(), hinge); err == nil || !strings.Contains(err.Error(), "soft targets need") {
		t.Errorf("hinge with a teacher: err = %v", err)
	}
}
