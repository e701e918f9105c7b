package encoder_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/triage-ml/triage/encoder"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/minilm"
)

// minilmCheckpoint is the all-MiniLM-L6-v2 folder scripts/fetch-minilm.sh
// unpacks (make test runs it).
func minilmCheckpoint(t *testing.T) string {
	t.Helper()
	dir := minilm.Checkpoint()
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
		t.Fatalf("MiniLM checkpoint not found at %s: run scripts/fetch-minilm.sh (make test does)", dir)
	}
	return dir
}

type golden struct {
	MaxSeqLength int `json:"max_seq_length"`
	Items        []struct {
		Text       string    `json:"text"`
		Embedding  []float32 `json:"embedding"`
		TokenCount int       `json:"token_count"`
	} `json:"items"`
}

// loadGolden reads the sentence-transformers reference embeddings.
func loadGolden(t *testing.T) golden {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "minilm-golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// TestGoldenEmbeddings converts the checkpoint with the Go converter, runs
// it in ONNX Runtime through Triage's tokenizer and length bucketing, and
// compares with sentence-transformers' own embeddings (PyTorch, computed
// once by scripts/parity/st_golden.py and committed).
func TestGoldenEmbeddings(t *testing.T) {
	g := loadGolden(t)
	if len(g.Items) < 100 {
		t.Fatalf("golden file has %d items, want at least 100", len(g.Items))
	}
	dir := filepath.Join(t.TempDir(), "minilm")
	m, err := encoder.Convert(minilmCheckpoint(t), dir, encoder.ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.MaxLength != g.MaxSeqLength || m.Pooling != encoder.PoolingMean || !m.Normalize || !m.Lowercase {
		t.Fatalf("manifest %+v does not match sentence-transformers' pipeline (max_seq_length %d, mean, normalize, lower-case)", m, g.MaxSeqLength)
	}
	enc, err := inference.OpenEncoderDir(dir, encoderdir.VariantFP32, inference.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()

	texts := make([]string, len(g.Items))
	longer := 0
	for i, it := range g.Items {
		texts[i] = it.Text
		if it.TokenCount > g.MaxSeqLength {
			longer++
		}
	}
	if longer < 5 {
		t.Fatalf("golden set has %d texts over %d tokens; truncation needs at least 5", longer, g.MaxSeqLength)
	}
	all, err := enc.EmbedTexts(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	D := enc.Dim()
	minCos, worst := 2.0, ""
	for i, it := range g.Items {
		c := cosine(all[i*D:(i+1)*D], it.Embedding)
		if c < minCos {
			minCos, worst = c, it.Text
		}
		if c < 0.9999 {
			t.Errorf("item %d (%d tokens) %.40q: cosine %.6f < 0.9999", i, it.TokenCount, it.Text, c)
		}
	}
	t.Logf("%d texts (%d over %d tokens): min cosine %.7f (%.40q)", len(g.Items), longer, g.MaxSeqLength, minCos, worst)

	// One text per call must give the same vectors as the length-bucketed
	// batch: padding and grouping may not change an embedding.
	for i := 0; i < len(texts); i += 7 {
		one, err := enc.EmbedTexts(context.Background(), texts[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if c := cosine(one, all[i*D:(i+1)*D]); c < 0.999999 {
			t.Errorf("text %d alone vs in a batch: cosine %.7f", i, c)
		}
	}
}
