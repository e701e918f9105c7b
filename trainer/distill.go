package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/internal/dataset"
)

// Teacher is a trained model whose probabilities a head learns from
// (knowledge distillation): typically a fine-tuned transformer, too slow
// for the streaming path, teaching the n-gram head that is fast.
type Teacher interface {
	// Manifest tells the teacher's labels and the split it was trained on.
	Manifest() bundle.Manifest
	// Distribution returns every label's probability for each text,
	// [len(texts)][labels] row-major, in Manifest().Labels order.
	Distribution(ctx context.Context, texts []string) ([]float32, error)
}

// Distill trains the head on a mix of the gold labels and a teacher's
// probabilities: the target for each training row is
// (1-w)·one-hot(gold) + w·softmax(teacher logits / T). Every (w, T) pair of
// Weights × Temperatures is searched like the other hyper-parameters (the
// teacher runs once). Only the logistic loss has soft targets; distilling
// searches it alone.
type Distill struct {
	Teacher      Teacher
	Source       string    // where the teacher came from, for the bundle's record
	Weights      []float64 // teacher's shares of the target; default [0.8]
	Temperatures []float64 // >1 softens the teacher's distribution; default [2]
}

// Defaults of Distill.
const (
	DefaultDistillWeight      = 0.8
	DefaultDistillTemperature = 2.0
)

// distillSetting is one (w, T) point of the search.
type distillSetting struct{ weight, temperature float64 }

// settings are the points to search; without distillation (d nil), one nil
// point: the gold labels alone.
func (d *Distill) settings() []*distillSetting {
	if d == nil {
		return []*distillSetting{nil}
	}
	var out []*distillSetting
	for _, w := range d.Weights {
		for _, t := range d.Temperatures {
			out = append(out, &distillSetting{w, t})
		}
	}
	return out
}

// validate fills defaults and checks d against o, whose own defaults
// (the losses) are already filled.
func (d *Distill) validate(o *Options) error {
	var errs []error
	if d.Teacher == nil {
		errs = append(errs, errors.New("--distill-from: no teacher model loaded"))
	}
	if len(d.Weights) == 0 {
		d.Weights = []float64{DefaultDistillWeight}
	}
	for _, w := range d.Weights {
		if w <= 0 || w > 1 {
			errs = append(errs, fmt.Errorf("--distill-weight %v: each must be in (0, 1]", w))
		}
	}
	if len(d.Temperatures) == 0 {
		d.Temperatures = []float64{DefaultDistillTemperature}
	}
	for _, t := range d.Temperatures {
		if t <= 0 || t > 100 {
			errs = append(errs, fmt.Errorf("--distill-temperature %v: each must be in (0, 100]", t))
		}
	}
	if o.FineTune != nil {
		errs = append(errs, errors.New("--distill-from and --fine-tune: distil into a head, or fine-tune; not both"))
	}
	for _, l := range o.Losses {
		if l != LossLogistic {
			errs = append(errs, fmt.Errorf("--loss %q with --distill-from: soft targets need the %q loss", l, LossLogistic))
		}
	}
	return errors.Join(errs...)
}

// distillBatch is how many texts go to the teacher per call: progress is
// logged between calls, and an encoder teacher's buffers stay small.
const distillBatch = 256

// teacherDistribution asks the teacher for its distribution over labels on
// every training text: [len(train)][len(labels)] row-major, in labels'
// order. It refuses a teacher trained on another split: the teacher would
// carry the labels of this run's validation rows into the head through its
// probabilities, and validation would overstate the head.
func teacherDistribution(ctx context.Context, opts Options, ds *dataset.Dataset, labels []string, train []dataset.Example) ([]float32, error) {
	tm := opts.Distill.Teacher.Manifest()
	tr := tm.Training
	if tr.DataSHA256 != ds.SHA256 || tr.Seed != opts.Seed || tr.ValFraction != opts.ValFraction || tr.TrainRows != len(train) {
		return nil, fmt.Errorf("distil from %s %s: it was trained on another split (data sha256 %.12s, seed %d, validation fraction %v, %d training rows; this run: %.12s, %d, %v, %d); train the teacher on the same data with the same --seed and --val-fraction, so it has not seen this run's validation rows",
			tm.Name, tm.Version, tr.DataSHA256, tr.Seed, tr.ValFraction, tr.TrainRows, ds.SHA256, opts.Seed, opts.ValFraction, len(train))
	}
	// The teacher's labels in our order (the same set, maybe another order).
	mismatch := fmt.Errorf("distil from %s %s: its labels %q are not this data's %q", tm.Name, tm.Version, tm.Labels, labels)
	if len(tm.Labels) != len(labels) {
		return nil, mismatch
	}
	index := labelIndex(labels)
	col := make([]int, len(tm.Labels))
	for j, l := range tm.Labels {
		i, ok := index[l]
		if !ok {
			return nil, mismatch
		}
		col[j] = i
	}
	C := len(labels)
	out := make([]float32, len(train)*C)
	all := texts(train)
	start, last := time.Now(), time.Now()
	for lo := 0; lo < len(all); lo += distillBatch {
		hi := min(lo+distillBatch, len(all))
		probs, err := opts.Distill.Teacher.Distribution(ctx, all[lo:hi])
		if err != nil {
			return nil, fmt.Errorf("distil from %s %s: texts %d-%d: %w", tm.Name, tm.Version, lo, hi, err)
		}
		if len(probs) != (hi-lo)*C {
			return nil, fmt.Errorf("distil from %s %s: %d probabilities for %d texts of %d labels", tm.Name, tm.Version, len(probs), hi-lo, C)
		}
		for i := lo; i < hi; i++ {
			for j, p := range probs[(i-lo)*C : (i-lo+1)*C] {
				out[i*C+col[j]] = p
			}
		}
		if time.Since(last) > 10*time.Second || hi == len(all) {
			opts.Logger.Info("teacher probabilities", "teacher", tm.Name+" "+tm.Version, "texts", hi, "of", len(all),
				"seconds", time.Since(start).Seconds())
			last = time.Now()
		}
	}
	return out, nil
}

// softTargets mixes the teacher's distribution (teacherDistribution's),
// softened by temperature, with the gold labels: the targets fit learns
// from, rows summing to 1.
func softTargets(teacher []float32, trY []int, C int, ds distillSetting) []float32 {
	out := make([]float32, len(teacher))
	invT, w := 1/ds.temperature, float32(ds.weight)
	row := make([]float64, C)
	for i, y := range trY {
		// softmax(log p / T) = p^(1/T) renormalised.
		sum := 0.0
		for c, p := range teacher[i*C : (i+1)*C] {
			row[c] = math.Pow(math.Max(float64(p), 1e-12), invT)
			sum += row[c]
		}
		t := out[i*C : (i+1)*C]
		for c := range t {
			t[c] = w * float32(row[c]/sum)
		}
		t[y] += 1 - w
	}
	return out
}
