package encoder_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/minilm"
)

// TestInt8Variant checks the quantised encoder scripts/build-encoder.sh
// makes (make test runs it first): its checksum is recorded, it loads, and
// its embeddings stay close to fp32's on the golden texts.
func TestInt8Variant(t *testing.T) {
	dir := minilm.Encoder()
	m, err := encoderdir.Read(dir)
	if err != nil {
		t.Fatalf("%v (run scripts/build-encoder.sh; make test does)", err)
	}
	sum, err := encoderdir.FileSHA256(filepath.Join(dir, encoderdir.Int8File))
	if err != nil {
		t.Fatalf("%v (run scripts/build-encoder.sh; make test does)", err)
	}
	if m.Files[encoderdir.Int8File] != sum {
		t.Fatalf("%s checksum %s, manifest says %q", encoderdir.Int8File, sum, m.Files[encoderdir.Int8File])
	}
	g := loadGolden(t)
	texts := make([]string, len(g.Items))
	for i, it := range g.Items {
		texts[i] = it.Text
	}
	D := m.HiddenSize
	embed := func(variant string) []float32 {
		enc, err := inference.OpenEncoderDir(dir, variant, inference.ModelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		e, err := enc.EmbedTexts(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		if variant == encoderdir.VariantInt8 {
			// Dynamic quantisation scales activations per tensor, so the
			// encoder runs int8 texts one at a time: a text's embedding may
			// not depend on the batch it arrives in.
			for _, i := range []int{0, 17, 101} {
				one, err := enc.EmbedTexts(context.Background(), texts[i:i+1])
				if err != nil {
					t.Fatal(err)
				}
				for j := range one {
					if one[j] != e[i*D+j] {
						t.Fatalf("int8 text %d: embedding alone differs from in a batch (dim %d: %v vs %v)", i, j, one[j], e[i*D+j])
					}
				}
			}
		}
		return e
	}
	fp32, int8 := embed(encoderdir.VariantFP32), embed(encoderdir.VariantInt8)
	var sum64, minCos float64 = 0, 2
	for i := range texts {
		c := cosine(fp32[i*D:(i+1)*D], int8[i*D:(i+1)*D])
		sum64 += c
		minCos = min(minCos, c)
	}
	mean := sum64 / float64(len(texts))
	t.Logf("int8 vs fp32 on %d golden texts: mean cosine %.4f, min %.4f", len(texts), mean, minCos)
	if mean < 0.98 || minCos < 0.9 {
		t.Errorf("int8 embeddings drift from fp32: mean cosine %.4f (want >= 0.98), min %.4f (want >= 0.9)", mean, minCos)
	}
}
