// Package onnxgraph exports a bag-of-features linear softmax classifier as an
// ONNX model. The ModelProto is encoded by hand with protowire so the module
// needs neither protoc nor generated ONNX bindings.
package onnxgraph

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"unicode/utf8"
)

// Graph input/output names and the opset the graph is written against.
const (
	InputIDs     = "feature_ids"     // int64  [batch, length]
	InputWeights = "feature_weights" // float32 [batch, length]
	OutputProbs  = "probabilities"   // float32 [batch, num_classes]
	Opset        = 17
)

// LinearSoftmax is a multinomial linear classifier over sparse features:
// probs[b] = softmax(bias + sum_l weights[b,l] * W[ids[b,l], :]).
type LinearSoftmax struct {
	NumFeatures int       // rows of Weights; row 0 is the padding row (callers keep it zero)
	NumClasses  int       // columns of Weights
	Weights     []float32 // row-major [NumFeatures][NumClasses]
	Bias        []float32 // [NumClasses]

	ProducerVersion string
	DocString       string
	Metadata        map[string]string // written as metadata_props, sorted by key for determinism
}

// checkShape verifies only the sizes, so Reference can stay O(batch*length)
// instead of rescanning every weight for NaN on each call.
func (m *LinearSoftmax) checkShape() error {
	if m.NumFeatures <= 0 {
		return fmt.Errorf("onnxgraph: NumFeatures must be > 0, got %d", m.NumFeatures)
	}
	if m.NumClasses <= 0 {
		return fmt.Errorf("onnxgraph: NumClasses must be > 0, got %d", m.NumClasses)
	}
	if m.NumClasses > math.MaxInt/m.NumFeatures {
		return fmt.Errorf("onnxgraph: NumFeatures*NumClasses overflows (%d x %d)", m.NumFeatures, m.NumClasses)
	}
	if want := m.NumFeatures * m.NumClasses; len(m.Weights) != want {
		return fmt.Errorf("onnxgraph: len(Weights) = %d, want NumFeatures*NumClasses = %d", len(m.Weights), want)
	}
	if len(m.Bias) != m.NumClasses {
		return fmt.Errorf("onnxgraph: len(Bias) = %d, want NumClasses = %d", len(m.Bias), m.NumClasses)
	}
	return nil
}

// Validate reports whether the model can be exported: sizes consistent and
// positive, all parameters finite, strings valid UTF-8 (protobuf parsers may
// reject invalid UTF-8 in string fields).
func (m *LinearSoftmax) Validate() error {
	if m == nil {
		return errors.New("onnxgraph: nil model")
	}
	if err := m.checkShape(); err != nil {
		return err
	}
	for i, v := range m.Weights {
		if !isFinite(v) {
			return fmt.Errorf("onnxgraph: Weights[%d] (feature %d, class %d) is %v", i, i/m.NumClasses, i%m.NumClasses, v)
		}
	}
	for i, v := range m.Bias {
		if !isFinite(v) {
			return fmt.Errorf("onnxgraph: Bias[%d] is %v", i, v)
		}
	}
	if !utf8.ValidString(m.ProducerVersion) {
		return errors.New("onnxgraph: ProducerVersion is not valid UTF-8")
	}
	if !utf8.ValidString(m.DocString) {
		return errors.New("onnxgraph: DocString is not valid UTF-8")
	}
	for k, v := range m.Metadata {
		if k == "" {
			return errors.New("onnxgraph: Metadata has an empty key")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("onnxgraph: Metadata entry %q is not valid UTF-8", k)
		}
	}
	return nil
}

func isFinite(v float32) bool {
	f := float64(v)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// WriteFile marshals the model and writes it atomically: a temp file in the
// same directory (so rename stays on one filesystem) is synced, then renamed
// over path, so readers never observe a partial model.
func (m *LinearSoftmax) WriteFile(path string) (err error) {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("onnxgraph: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("onnxgraph: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("onnxgraph: sync %s: %w", tmp, err)
	}
	// CreateTemp uses 0600; models are meant to be shared like normal files.
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("onnxgraph: chmod %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("onnxgraph: close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("onnxgraph: rename %s: %w", path, err)
	}
	// Persist the rename itself; best effort, not every platform can fsync a dir.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Reference computes the model's probabilities in pure Go (float64
// accumulation, float32 result) for parity tests and benchmarks. ids and
// weights are row-major [batch][length]; the result is row-major
// [batch][NumClasses]. Ids outside [0, NumFeatures) are an error: ONNX Gather
// would wrap negative ids, but a negative id is always a caller bug here.
func (m *LinearSoftmax) Reference(ids []int64, weights []float32, batch, length int) ([]float32, error) {
	if m == nil {
		return nil, errors.New("onnxgraph: reference: nil model")
	}
	if err := m.checkShape(); err != nil {
		return nil, fmt.Errorf("onnxgraph: reference: %w", err)
	}
	if batch < 0 || length < 0 {
		return nil, fmt.Errorf("onnxgraph: reference: negative batch (%d) or length (%d)", batch, length)
	}
	if length != 0 && batch > math.MaxInt/length {
		return nil, fmt.Errorf("onnxgraph: reference: batch*length overflows (%d x %d)", batch, length)
	}
	n := batch * length
	if len(ids) != n || len(weights) != n {
		return nil, fmt.Errorf("onnxgraph: reference: len(ids)=%d, len(weights)=%d, want batch*length=%d", len(ids), len(weights), n)
	}
	c := m.NumClasses
	out := make([]float32, batch*c)
	acc := make([]float64, c)
	for b := 0; b < batch; b++ {
		for j, v := range m.Bias {
			acc[j] = float64(v)
		}
		for l := 0; l < length; l++ {
			id := ids[b*length+l]
			if id < 0 || id >= int64(m.NumFeatures) {
				return nil, fmt.Errorf("onnxgraph: reference: ids[%d][%d] = %d out of range [0, %d)", b, l, id, m.NumFeatures)
			}
			w := float64(weights[b*length+l])
			row := m.Weights[int(id)*c : int(id)*c+c]
			for j, v := range row {
				acc[j] += w * float64(v)
			}
		}
		// Subtract the max before exp so large logits cannot overflow.
		mx := math.Inf(-1)
		for _, v := range acc {
			mx = math.Max(mx, v)
		}
		var sum float64
		for j, v := range acc {
			e := math.Exp(v - mx)
			acc[j] = e
			sum += e
		}
		dst := out[b*c : b*c+c]
		for j, e := range acc {
			dst[j] = float32(e / sum)
		}
	}
	return out, nil
}
