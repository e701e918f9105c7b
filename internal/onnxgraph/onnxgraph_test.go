package onnxgraph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// randomModel builds a deterministic model with a zero padding row.
func randomModel(seed uint64, features, classes int) *LinearSoftmax {
	r := rand.New(rand.NewPCG(seed, 42))
	m := &LinearSoftmax{
		NumFeatures:     features,
		NumClasses:      classes,
		Weights:         make([]float32, features*classes),
		Bias:            make([]float32, classes),
		ProducerVersion: "test-1.2.3",
		DocString:       "random test model",
		Metadata:        map[string]string{"zeta": "last", "alpha": "first", "labels": "a,b,c"},
	}
	for i := classes; i < len(m.Weights); i++ { // row 0 stays zero
		m.Weights[i] = float32(r.NormFloat64())
	}
	for i := range m.Bias {
		m.Bias[i] = float32(r.NormFloat64() * 0.1)
	}
	return m
}

func TestValidate(t *testing.T) {
	good := func() *LinearSoftmax { return randomModel(1, 4, 3) }
	if err := good().Validate(); err != nil {
		t.Fatalf("valid model rejected: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(m *LinearSoftmax)
		want   string
	}{
		{"zero features", func(m *LinearSoftmax) { m.NumFeatures = 0; m.Weights = nil }, "NumFeatures"},
		{"negative classes", func(m *LinearSoftmax) { m.NumClasses = -3 }, "NumClasses"},
		{"short weights", func(m *LinearSoftmax) { m.Weights = m.Weights[:len(m.Weights)-1] }, "len(Weights)"},
		{"long weights", func(m *LinearSoftmax) { m.Weights = append(m.Weights, 0) }, "len(Weights)"},
		{"short bias", func(m *LinearSoftmax) { m.Bias = m.Bias[:2] }, "len(Bias)"},
		{"overflow", func(m *LinearSoftmax) { m.NumFeatures, m.NumClasses = math.MaxInt/2, 3 }, "overflows"},
		{"NaN weight", func(m *LinearSoftmax) { m.Weights[7] = float32(math.NaN()) }, "Weights[7] (feature 2, class 1) is NaN"},
		{"Inf weight", func(m *LinearSoftmax) { m.Weights[0] = float32(math.Inf(-1)) }, "Weights[0]"},
		{"Inf bias", func(m *LinearSoftmax) { m.Bias[1] = float32(math.Inf(1)) }, "Bias[1] is +Inf"},
		{"NaN bias", func(m *LinearSoftmax) { m.Bias[2] = float32(math.NaN()) }, "Bias[2] is NaN"},
		{"empty metadata key", func(m *LinearSoftmax) { m.Metadata[""] = "x" }, "empty key"},
		{"bad utf8", func(m *LinearSoftmax) { m.DocString = "\xff" }, "UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.mutate(m)
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid model")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "onnxgraph: ") {
				t.Errorf("error %q: want prefix %q and substring %q", err, "onnxgraph: ", tc.want)
			}
			if _, err := m.Marshal(); err == nil {
				t.Error("Marshal accepted an invalid model")
			}
			path := filepath.Join(t.TempDir(), "m.onnx")
			if err := m.WriteFile(path); err == nil {
				t.Error("WriteFile accepted an invalid model")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("WriteFile left a file behind on error: %v", err)
			}
		})
	}
	var nilModel *LinearSoftmax
	if err := nilModel.Validate(); err == nil {
		t.Error("nil model accepted")
	}
}

func TestMarshalDeterministic(t *testing.T) {
	a, err := randomModel(7, 30, 4).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Rebuild the metadata map in a different insertion order; Go map
	// iteration is randomized, so repeated marshals also exercise sorting.
	m := randomModel(7, 30, 4)
	m.Metadata = map[string]string{"labels": "a,b,c", "zeta": "last", "alpha": "first"}
	for i := 0; i < 20; i++ {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("marshal %d differs from first (len %d vs %d)", i, len(b), len(a))
		}
	}
	// ModelProto starts with ir_version (field 1, varint) = 8.
	if !bytes.HasPrefix(a, []byte{0x08, 0x08}) {
		t.Errorf("model does not start with ir_version=8: % x", a[:4])
	}
	// Weights are stored as little-endian raw_data, so W[1][0] appears verbatim.
	w := m.Weights[m.NumClasses]
	le := []byte{0, 0, 0, 0}
	bits := math.Float32bits(w)
	le[0], le[1], le[2], le[3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
	if !bytes.Contains(a, le) {
		t.Errorf("raw little-endian bytes of W[1][0]=%v not found", w)
	}
	ia := bytes.Index(a, []byte("alpha"))
	il := bytes.Index(a, []byte("labels"))
	iz := bytes.Index(a, []byte("zeta"))
	if ia < 0 || il < 0 || iz < 0 || !(ia < il && il < iz) {
		t.Errorf("metadata not sorted by key: alpha@%d labels@%d zeta@%d", ia, il, iz)
	}
	m.Weights[5] += 1
	c, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Error("changing a weight did not change the bytes")
	}
}

func TestReferenceHandComputed(t *testing.T) {
	m := &LinearSoftmax{
		NumFeatures: 3,
		NumClasses:  2,
		Weights: []float32{
			0, 0, // padding
			1, 0,
			0, 2,
		},
		Bias: []float32{0.5, -0.5},
	}
	ids := []int64{
		1, 2, // logits = [0.5 + 1*1, -0.5 + 0.5*2] = [1.5, 0.5]
		2, 0, // logits = [0.5, -0.5 + 2*2] = [0.5, 3.5]; padding adds 0
	}
	weights := []float32{
		1, 0.5,
		2, 9,
	}
	got, err := m.Reference(ids, weights, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	// softmax([x, x-d]) = [1/(1+e^-d), 1 - that]
	want := []float32{
		0.7310585786, 0.2689414214, // d = 1
		0.0474258732, 0.9525741268, // d = 3
	}
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-7 {
			t.Errorf("probs[%d] = %.10f, want %.10f", i, got[i], want[i])
		}
	}

	// Empty bags fall back to softmax(bias); empty batches are fine.
	got, err = m.Reference(nil, nil, 1, 0)
	if err != nil || len(got) != 2 || math.Abs(float64(got[0])-0.7310585786) > 1e-7 {
		t.Errorf("length 0: got %v, %v", got, err)
	}
	if got, err = m.Reference(nil, nil, 0, 5); err != nil || len(got) != 0 {
		t.Errorf("batch 0: got %v, %v", got, err)
	}

	bad := []struct {
		name    string
		ids     []int64
		weights []float32
		batch   int
		length  int
		want    string
	}{
		{"id too large", []int64{1, 3}, []float32{1, 1}, 1, 2, "ids[0][1] = 3 out of range [0, 3)"},
		{"negative id", []int64{-1, 1}, []float32{1, 1}, 1, 2, "ids[0][0] = -1 out of range"},
		{"short ids", []int64{1}, []float32{1, 1}, 1, 2, "len(ids)=1"},
		{"short weights", []int64{1, 1}, []float32{1}, 1, 2, "len(weights)=1"},
		{"negative batch", nil, nil, -1, 2, "negative"},
	}
	for _, tc := range bad {
		if _, err := m.Reference(tc.ids, tc.weights, tc.batch, tc.length); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want containing %q", tc.name, err, tc.want)
		}
	}
}

func TestReferenceRowsSumToOne(t *testing.T) {
	m := randomModel(3, 50, 7)
	// Large logits must not overflow exp.
	m.Bias[0] = 500
	ids, weights := randomBatch(9, m.NumFeatures, 16, 10)
	got, err := m.Reference(ids, weights, 16, 10)
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 16; b++ {
		var sum float64
		for _, p := range got[b*m.NumClasses : (b+1)*m.NumClasses] {
			if p < 0 || p > 1 || math.IsNaN(float64(p)) {
				t.Fatalf("row %d: probability %v outside [0,1]", b, p)
			}
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Errorf("row %d sums to %v", b, sum)
		}
	}
}

func TestWriteFile(t *testing.T) {
	m := randomModel(5, 20, 3)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	want, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("file contents differ from Marshal output")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := m.WriteFile(filepath.Join(dir, "missing", "m.onnx")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// randomBatch draws ids in [0, features) (including padding id 0) and
// weights in [-1, 3).
func randomBatch(seed uint64, features, batch, length int) ([]int64, []float32) {
	r := rand.New(rand.NewPCG(seed, 7))
	ids := make([]int64, batch*length)
	weights := make([]float32, batch*length)
	for i := range ids {
		ids[i] = r.Int64N(int64(features))
		weights[i] = float32(r.Float64()*4 - 1)
	}
	return ids, weights
}

// checkerScript validates the model with the official onnx checker (full
// check includes strict shape inference), prints the inferred shapes, and
// runs onnx's ReferenceEvaluator on the batch from the input JSON.
const checkerScript = `
import json, sys
import numpy as np
import onnx
from onnx import checker, shape_inference
from onnx.reference import ReferenceEvaluator

model_path, in_path, out_path = sys.argv[1:4]
with open(model_path, "rb") as f:
    raw = f.read()
m = onnx.load_from_string(raw)
checker.check_model(m, full_check=True)
print("checker: ok")

def dims(vi):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in vi.type.tensor_type.shape.dim]

inf = shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
shapes = {vi.name: dims(vi) for vi in list(inf.graph.value_info) + list(inf.graph.output)}
out = inf.graph.output[0]
print("inferred output:", out.name, json.dumps(dims(out)))

with open(in_path) as f:
    req = json.load(f)
shape = (req["batch"], req["length"])
feeds = {
    "feature_ids": np.array(req["ids"], dtype=np.int64).reshape(shape),
    "feature_weights": np.array(req["weights"], dtype=np.float32).reshape(shape),
}
(probs,) = ReferenceEvaluator(m).run(None, feeds)
with open(out_path, "w") as f:
    json.dump({
        "reserialized_identical": m.SerializeToString() == raw,
        "ir_version": m.ir_version,
        "producer_name": m.producer_name,
        "producer_version": m.producer_version,
        "doc_string": m.doc_string,
        "opset": [[o.domain, o.version] for o in m.opset_import],
        "metadata": [[p.key, p.value] for p in m.metadata_props],
        "inputs": [[i.name, i.type.tensor_type.elem_type, dims(i)] for i in m.graph.input],
        "shapes": shapes,
        "dtype": str(probs.dtype),
        "probs_shape": list(probs.shape),
        "probs": probs.astype(np.float64).ravel().tolist(),
    }, f)
`

func requireONNX(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not found (%v); this test needs python3 with onnx: run `pip install onnx`", err)
	}
	if out, err := exec.Command(py, "-c", "import onnx").CombinedOutput(); err != nil {
		t.Fatalf("python3 cannot import onnx (%v): %s\nrun `pip install onnx` (CI installs it)", err, out)
	}
	return py
}

func TestONNXCheckerAndReferenceEvaluator(t *testing.T) {
	py := requireONNX(t)
	cases := []struct {
		features, classes, batch, length int
	}{
		{50, 5, 4, 7},
		{1, 1, 2, 3}, // degenerate: only the padding row, one class
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%dx%d", tc.features, tc.classes), func(t *testing.T) {
			dir := t.TempDir()
			m := randomModel(11, tc.features, tc.classes)
			modelPath := filepath.Join(dir, "model.onnx")
			if err := m.WriteFile(modelPath); err != nil {
				t.Fatal(err)
			}
			ids, weights := randomBatch(13, tc.features, tc.batch, tc.length)
			ids[0] = int64(tc.features - 1) // exercise the last row
			req, err := json.Marshal(map[string]any{
				"batch": tc.batch, "length": tc.length, "ids": ids, "weights": weights,
			})
			if err != nil {
				t.Fatal(err)
			}
			inPath, outPath := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
			if err := os.WriteFile(inPath, req, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py, "-c", checkerScript, modelPath, inPath, outPath)
			out, err := cmd.CombinedOutput()
			t.Logf("python output:\n%s", out)
			if err != nil {
				t.Fatalf("onnx check failed: %v", err)
			}
			if !strings.Contains(string(out), "checker: ok") {
				t.Fatal("checker did not report success")
			}
			wantOut := fmt.Sprintf(`inferred output: %s ["batch", %d]`, OutputProbs, tc.classes)
			if !strings.Contains(string(out), wantOut) {
				t.Errorf("missing %q in python output", wantOut)
			}

			raw, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				Identical       bool             `json:"reserialized_identical"`
				IRVersion       int64            `json:"ir_version"`
				ProducerName    string           `json:"producer_name"`
				ProducerVersion string           `json:"producer_version"`
				DocString       string           `json:"doc_string"`
				Opset           [][]any          `json:"opset"`
				Metadata        [][2]string      `json:"metadata"`
				Inputs          [][]any          `json:"inputs"`
				Shapes          map[string][]any `json:"shapes"`
				DType           string           `json:"dtype"`
				ProbsShape      []int            `json:"probs_shape"`
				Probs           []float64        `json:"probs"`
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				t.Fatal(err)
			}
			// protobuf writes known fields in field-number order, so a
			// byte-identical re-encode means no field was mis-typed or dropped.
			if !res.Identical {
				t.Error("protobuf re-serialization differs from our bytes")
			}
			if res.IRVersion != 8 || res.ProducerName != "triage" || res.ProducerVersion != m.ProducerVersion || res.DocString != m.DocString {
				t.Errorf("model header = %d %q %q %q", res.IRVersion, res.ProducerName, res.ProducerVersion, res.DocString)
			}
			if got := fmt.Sprint(res.Opset); got != "[[ 17]]" {
				t.Errorf("opset_import = %s, want [[ 17]]", got)
			}
			if got := fmt.Sprint(res.Metadata); got != "[[alpha first] [labels a,b,c] [zeta last]]" {
				t.Errorf("metadata_props = %s", got)
			}
			// elem_type 7 = INT64, 1 = FLOAT.
			if got := fmt.Sprint(res.Inputs); got != "[[feature_ids 7 [batch length]] [feature_weights 1 [batch length]]]" {
				t.Errorf("graph inputs = %s", got)
			}
			for name, want := range map[string]string{
				nameGathered: fmt.Sprintf("[batch length %d]", tc.classes),
				nameWeights3: "[batch 1 length]",
				nameProduct:  fmt.Sprintf("[batch 1 %d]", tc.classes),
				nameSummed:   fmt.Sprintf("[batch %d]", tc.classes),
				nameLogits:   fmt.Sprintf("[batch %d]", tc.classes),
				OutputProbs:  fmt.Sprintf("[batch %d]", tc.classes),
			} {
				if got := fmt.Sprint(res.Shapes[name]); got != want {
					t.Errorf("inferred shape of %s = %s, want %s", name, got, want)
				}
			}

			if res.DType != "float32" || fmt.Sprint(res.ProbsShape) != fmt.Sprint([]int{tc.batch, tc.classes}) {
				t.Fatalf("evaluator output %s %v, want float32 [%d %d]", res.DType, res.ProbsShape, tc.batch, tc.classes)
			}
			want, err := m.Reference(ids, weights, tc.batch, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Probs) != len(want) {
				t.Fatalf("evaluator returned %d values, Reference %d", len(res.Probs), len(want))
			}
			var maxDiff float64
			for i, p := range res.Probs {
				d := math.Abs(p - float64(want[i]))
				maxDiff = math.Max(maxDiff, d)
				if d > 1e-5 {
					t.Errorf("probs[%d][%d]: onnx %v, Reference %v", i/tc.classes, i%tc.classes, p, want[i])
				}
			}
			t.Logf("max |onnx - Reference| = %g", maxDiff)
		})
	}
}
