package inference

import (
	"cmp"
	"context"
	"fmt"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/onnxgraph"
)

// Reference scores a bundle in pure Go, without ONNX Runtime, from the
// weights stored in its model.onnx: the baseline that parity tests and
// benchmarks hold the ONNX Runtime path against.
type Reference struct {
	bundle *bundle.Bundle
	graph  *onnxgraph.LinearSoftmax
	topK   int
}

// OpenReference loads the bundle in dir for pure-Go scoring.
func OpenReference(dir string, topK int) (*Reference, error) {
	b, err := bundle.Load(dir)
	if err != nil {
		return nil, err
	}
	if b.Manifest.Graph.Kind != bundle.KindLinear {
		return nil, fmt.Errorf("pure-Go reference %q: only linear bundles (this one is %s)", dir, b.Manifest.Graph.Kind)
	}
	g, err := onnxgraph.ReadLinearSoftmax(b.ModelPath)
	if err != nil {
		return nil, err
	}
	return &Reference{bundle: b, graph: g, topK: min(cmp.Or(topK, 5), len(b.Manifest.Labels))}, nil
}

// Probabilities returns the [len(vs)][classes] probability matrix.
func (r *Reference) Probabilities(vs []featurizer.Vector) ([]float32, error) {
	ids, weights, length := featurizer.Batch(vs)
	return r.graph.Reference(ids, weights, len(vs), length)
}

// Predict classifies texts like Model.Predict.
func (r *Reference) Predict(ctx context.Context, texts []string) ([]Prediction, error) {
	if len(texts) == 0 {
		return nil, ErrNoTexts
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vs := make([]featurizer.Vector, len(texts))
	parallel(len(texts), func(i int) { vs[i] = r.bundle.Featurizer.Transform(texts[i]) })
	probs, err := r.Probabilities(vs)
	if err != nil {
		return nil, err
	}
	m := r.bundle.Manifest
	ins := make([]Input, len(vs))
	for i, v := range vs {
		ins[i] = Input{Features: v, Truncated: v.Truncated}
	}
	return decode(m.Labels, ModelRef{Name: m.Name, Version: m.Version}, r.topK, ins, probs), nil
}
