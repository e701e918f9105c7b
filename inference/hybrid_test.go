package inference

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/encoder"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/minilm"
	"github.com/triage-ml/triage/internal/onnxgraph"
	"github.com/triage-ml/triage/trainer"
)

// testEncoder converts the MiniLM checkpoint (scripts/fetch-minilm.sh; make
// test runs it) into a temporary encoder folder.
func testEncoder(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "minilm")
	if _, err := encoder.Convert(minilm.Checkpoint(), dir, encoder.ConvertOptions{}); err != nil {
		t.Fatalf("convert MiniLM (run scripts/fetch-minilm.sh; make test does): %v", err)
	}
	return dir
}

// TestEncoderBundles trains hybrid and encoder-only heads on frozen MiniLM
// features, then checks that the served two-stage bundle (encoder.onnx,
// then the head) gives what its parts give separately, and classifies.
func TestEncoderBundles(t *testing.T) {
	encDir := testEncoder(t)
	opts := ModelOptions{Session: SessionOptions{PoolSize: 1, IntraOpThreads: 1}}
	enc, err := OpenEncoderDir(encDir, encoderdir.VariantFP32, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	man, err := encoderdir.Read(encDir)
	if err != nil {
		t.Fatal(err)
	}
	data := ticketsCSV(t)
	texts := []string{"my card has not arrived after weeks of waiting", "I want my money back from the merchant",
		"what exchange rate do you use for euro to dollar", "my card was stolen, please block it"}
	want := []string{"card_arrival", "refund", "exchange_rate", "lost_card"}

	for _, tc := range []struct {
		features []string
		kind     string
	}{
		{[]string{trainer.FeaturesNgram, trainer.FeaturesEncoder}, bundle.KindHybrid},
		{[]string{trainer.FeaturesEncoder}, bundle.KindEncoder},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), tc.kind)
			res, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: out, Seed: 1,
				LearningRates: []float64{0.2}, L2s: []float64{0}, MaxEpochs: 6, Features: tc.features, EncoderScales: []float64{2},
				Encoder: &trainer.EncoderSource{Embedder: enc, Dir: encDir, Variant: encoderdir.VariantFP32, Manifest: man}})
			if err != nil {
				t.Fatal(err)
			}
			if k := res.Manifest.Graph.Kind; k != tc.kind {
				t.Fatalf("bundle kind %q, want %q", k, tc.kind)
			}
			m, err := Open(out, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			preds, err := m.Predict(context.Background(), texts)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range preds {
				if p.Label != want[i] {
					t.Errorf("%q: label %q (%.2f), want %q", texts[i], p.Label, p.Confidence, want[i])
				}
			}

			// The head run by hand in pure Go on the encoder's embeddings must
			// match what the served bundle returns.
			b, err := bundle.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			head, err := onnxgraph.ReadLinearSoftmax(b.ModelPath)
			if err != nil {
				t.Fatal(err)
			}
			emb, err := enc.EmbedTexts(context.Background(), texts)
			if err != nil {
				t.Fatal(err)
			}
			vs := make([]featurizer.Vector, len(texts))
			if b.Featurizer != nil {
				for i, s := range texts {
					vs[i] = b.Featurizer.Transform(s)
				}
			}
			es := b.Manifest.Encoder
			hv := featurizer.AppendDense(vs, emb, es.Dim, es.FeatureOffset, es.Scale)
			ids, ws, L := featurizer.Batch(hv)
			ref, err := head.Reference(ids, ws, len(hv), L)
			if err != nil {
				t.Fatal(err)
			}
			C := len(b.Manifest.Labels)
			for i, p := range preds {
				for _, sc := range p.Scores {
					c := indexOf(b.Manifest.Labels, sc.Label)
					if d := math.Abs(float64(sc.Score - ref[i*C+c])); d > 1e-4 {
						t.Errorf("text %d label %s: served %.6f, reference %.6f", i, sc.Label, sc.Score, ref[i*C+c])
					}
				}
			}

			// Tampering with the encoder files, or relabelling the bundle linear
			// so they would go unchecked, must stop it from loading.
			tamper := func(name string, edit func([]byte) []byte) string {
				t.Helper()
				cp := filepath.Join(t.TempDir(), "bundle")
				if err := os.CopyFS(cp, os.DirFS(out)); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(cp, name)
				raw, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, edit(raw), 0o644); err != nil {
					t.Fatal(err)
				}
				return cp
			}
			for _, c := range []struct{ file, from, to, want string }{
				{bundle.VocabFile, "[PAD]", "[PAX]", "checksum mismatch"},
				{bundle.EncoderFile, "triage", "triagf", "checksum mismatch"},
				{bundle.ManifestFile, `"kind": "` + tc.kind + `"`, `"kind": "linear"`, "linear bundle has an encoder section"},
				{bundle.ManifestFile, `"variant": "fp32"`, `"variant": "fp16"`, "variant"},
			} {
				cp := tamper(c.file, func(b []byte) []byte { return []byte(strings.Replace(string(b), c.from, c.to, 1)) })
				if _, err := bundle.Load(cp); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s %q->%q: Load error %v, want %q", c.file, c.from, c.to, err, c.want)
				}
			}

			// Transform (gateway request goroutine) + PredictInputs is Predict.
			again, err := m.PredictInputs(context.Background(), m.TransformAll(texts))
			if err != nil {
				t.Fatal(err)
			}
			for i := range again {
				if again[i].Label != preds[i].Label || math.Abs(float64(again[i].Confidence-preds[i].Confidence)) > 1e-6 {
					t.Errorf("text %d: PredictInputs %v vs Predict %v", i, again[i], preds[i])
				}
			}
		})
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func TestPlanChunks(t *testing.T) {
	// Equal lengths: one call. A long outlier: its own call.
	if got := planChunks([]int{10, 10, 10, 10}, 48, chunkPolicy); len(got) != 1 {
		t.Errorf("equal lengths split into %v", got)
	}
	got := planChunks([]int{8, 9, 9, 10, 10, 11, 12, 12, 200}, 48, chunkPolicy)
	if len(got) != 2 || got[1] != [2]int{8, 9} {
		t.Errorf("outlier not isolated: %v", got)
	}
	// Limits hold and chunks tile the input.
	lengths := make([]int, 300)
	for i := range lengths {
		lengths[i] = 5 + i/3
	}
	next := 0
	for _, c := range planChunks(lengths, 48, batch.Policy{MaxCount: 64, MaxTokens: 2048}) {
		if c[0] != next || c[1] <= c[0] || c[1]-c[0] > 64 || (c[1]-c[0] > 1 && (c[1]-c[0])*lengths[c[1]-1] > 2048) {
			t.Fatalf("bad chunk %v (previous end %d)", c, next)
		}
		next = c[1]
	}
	if next != len(lengths) {
		t.Fatalf("chunks end at %d of %d", next, len(lengths))
	}
	// One text per run (int8), and a text over the token limit runs alone
	// rather than not at all.
	if got := planChunks([]int{3, 3, 3}, 48, batch.Policy{MaxCount: 1}); len(got) != 3 {
		t.Errorf("MaxCount 1: chunks %v", got)
	}
	if got := planChunks([]int{4, 600}, 48, batch.Policy{MaxTokens: 512}); len(got) != 2 || got[1] != [2]int{1, 2} {
		t.Errorf("over-long text: chunks %v", got)
	}
}
