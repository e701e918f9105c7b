package main

import (
	"flag"
	"fmt"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/trainer"
)

// distillFlags are --distill-from and its knobs: a teacher bundle whose
// probabilities the head learns from.
type distillFlags struct {
	from                  string
	weights, temperatures string
}

func (f *distillFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.from, "distill-from", "", "teacher model bundle (e.g. a fine-tuned one) trained on the same --data, --seed and --val-fraction: the head learns from its probabilities as well as from the labels")
	fs.StringVar(&f.weights, "distill-weight", fmt.Sprint(trainer.DefaultDistillWeight), "the teacher's shares of each training target to search, comma-separated, each in (0, 1] (the gold label has the rest)")
	fs.StringVar(&f.temperatures, "distill-temperature", fmt.Sprint(trainer.DefaultDistillTemperature), "temperatures to search, comma-separated: T softens the teacher's probabilities (p^(1/T), renormalised); 1 keeps them")
}

// stray refuses the knobs without --distill-from: they would be ignored.
func (f *distillFlags) stray(fs *flag.FlagSet) error {
	if f.from != "" {
		return nil
	}
	if err := strayFlags(fs, "--distill-from DIR", "distill-weight", "distill-temperature"); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// open loads the teacher (nil without --distill-from) through ONNX Runtime,
// as it serves.
func (f *distillFlags) open(rt *runtimeFlags) (*trainer.Distill, func(), error) {
	if f.from == "" {
		return nil, func() {}, nil
	}
	weights, err := parseFloats("--distill-weight", f.weights)
	if err != nil {
		return nil, nil, err
	}
	temps, err := parseFloats("--distill-temperature", f.temperatures)
	if err != nil {
		return nil, nil, err
	}
	rt.sessions, rt.topK = 1, 1
	mo, err := rt.options()
	if err != nil {
		return nil, nil, err
	}
	m, err := inference.Open(f.from, mo)
	if err != nil {
		return nil, nil, fmt.Errorf("--distill-from: %w", err)
	}
	// A served model is a teacher as it is (Manifest, Distribution).
	return &trainer.Distill{Teacher: m, Source: f.from, Weights: weights, Temperatures: temps},
		func() { m.Close() }, nil
}
