package onnxgraph

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

func TestReadLinearSoftmaxRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := &LinearSoftmax{NumFeatures: 40, NumClasses: 7, Weights: make([]float32, 280), Bias: make([]float32, 7)}
	for i := range m.Weights {
		m.Weights[i] = rng.Float32() - 0.5
	}
	for i := range m.Bias {
		m.Bias[i] = rng.Float32()
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLinearSoftmax(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.NumFeatures != 40 || got.NumClasses != 7 || !slices.Equal(got.Weights, m.Weights) || !slices.Equal(got.Bias, m.Bias) {
		t.Errorf("round trip changed the model")
	}
	if _, err := UnmarshalLinearSoftmax([]byte("not a model")); err == nil {
		t.Error("garbage decoded without error")
	}
}
