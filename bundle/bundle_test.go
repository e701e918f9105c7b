package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/scoring"
)

// fixture is a small but complete bundle: the ONNX bytes are opaque to this
// package (Load checks their checksum, ONNX Runtime parses them), so any
// bytes do.
func fixture(t *testing.T, version string) (*Manifest, *featurizer.Vocab, []byte) {
	t.Helper()
	vocab, err := featurizer.NewVocab([]uint32{3, 17, 256, 4096, 1 << 20}, []float32{1.5, 2.25, 1, 3.125, 1.0625})
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{
		Name: "support", Version: version, CreatedAt: time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC),
		Labels:     []string{"account", "billing", "shipping"},
		Featurizer: featurizer.DefaultConfig(),
		Graph: Graph{Kind: "linear", Opset: 17, NumFeatures: vocab.Size(), NumClasses: 3,
			InputIDs: "ids", InputWeight: "weights", Output: "probs"},
		HyperParams: map[string]any{"loss": "logistic", "learning_rate": 0.2},
		Metrics: Metrics{Validation: scoring.Report{N: 18, Accuracy: 0.9, MacroF1: 0.89,
			PerClass: map[string]scoring.ClassMetrics{"billing": {Precision: 1, Recall: 0.8, F1: 0.888, Support: 5}}}, TrainAcc: 0.99},
		Training: Training{DataPath: "tickets.csv", DataSHA256: strings.Repeat("ab", 32), Rows: 180, TrainRows: 162, ValRows: 18, Seed: 7, ValFraction: 0.1},
	}
	onnx := []byte("\x08\x07fake-onnx-graph-" + version)
	return m, vocab, onnx
}

func writeFixture(t *testing.T, dir, version string) (*Manifest, *featurizer.Vocab, []byte) {
	t.Helper()
	m, v, onnx := fixture(t, version)
	if err := Write(dir, m, v, onnx); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return m, v, onnx
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "models", "support") // parent does not exist yet
	m, vocab, onnx := writeFixture(t, dir, "v1")

	if m.FormatVersion != FormatVersion {
		t.Errorf("Write left FormatVersion %d, want %d", m.FormatVersion, FormatVersion)
	}
	for _, name := range []string{ManifestFile, ModelFile, FeaturesFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("bundle file %s: %v", name, err)
		}
	}

	b, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if b.Dir != dir || b.ModelPath != filepath.Join(dir, ModelFile) {
		t.Errorf("Dir %q ModelPath %q", b.Dir, b.ModelPath)
	}
	got := b.Manifest
	if got.Name != "support" || got.Version != "v1" || got.FormatVersion != FormatVersion {
		t.Errorf("name/version/format = %q %q %d", got.Name, got.Version, got.FormatVersion)
	}
	if !got.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("created_at %v, want %v", got.CreatedAt, m.CreatedAt)
	}
	if !reflect.DeepEqual(got.Labels, m.Labels) || got.Graph != m.Graph || got.Featurizer != m.Featurizer {
		t.Errorf("labels/graph/featurizer changed:\n got %+v %+v %+v\nwant %+v %+v %+v",
			got.Labels, got.Graph, got.Featurizer, m.Labels, m.Graph, m.Featurizer)
	}
	if !reflect.DeepEqual(got.Training, m.Training) {
		t.Errorf("training %+v, want %+v", got.Training, m.Training)
	}
	if !reflect.DeepEqual(got.Metrics.Validation, m.Metrics.Validation) || got.Metrics.TrainAcc != m.Metrics.TrainAcc {
		t.Errorf("metrics %+v, want %+v", got.Metrics, m.Metrics)
	}
	if got.HyperParams["loss"] != "logistic" || got.HyperParams["learning_rate"] != 0.2 {
		t.Errorf("hyper_params %v", got.HyperParams)
	}
	wantSum := sha256.Sum256(onnx)
	if got.Files[ModelFile] != hex.EncodeToString(wantSum[:]) {
		t.Errorf("files[%s] = %q, want sha256 of the ONNX bytes", ModelFile, got.Files[ModelFile])
	}
	if len(got.Files[FeaturesFile]) != 64 {
		t.Errorf("files[%s] = %q, want a sha256 hex digest", FeaturesFile, got.Files[FeaturesFile])
	}
	onDisk, err := os.ReadFile(b.ModelPath)
	if err != nil || !bytes.Equal(onDisk, onnx) {
		t.Errorf("model.onnx on disk differs from what was written (err %v)", err)
	}

	// The vocabulary (buckets and IDF) survives features.bin exactly.
	if b.Featurizer == nil {
		t.Fatal("Load returned no featurizer")
	}
	gv := b.Featurizer.Vocab()
	if !reflect.DeepEqual(gv.Buckets, vocab.Buckets) || !reflect.DeepEqual(gv.IDF, vocab.IDF) {
		t.Errorf("vocab round trip:\n got %v %v\nwant %v %v", gv.Buckets, gv.IDF, vocab.Buckets, vocab.IDF)
	}
	if b.Featurizer.Config() != m.Featurizer {
		t.Errorf("featurizer config %+v, want %+v", b.Featurizer.Config(), m.Featurizer)
	}
	// features.bin layout: magic, count, buckets, IDF weights.
	feats, err := os.ReadFile(filepath.Join(dir, FeaturesFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(vocabMagic) + 4 + 8*len(vocab.Buckets); len(feats) != want || !bytes.HasPrefix(feats, vocabMagic) {
		t.Errorf("features.bin is %d bytes (prefix %q), want %d starting %q", len(feats), feats[:min(8, len(feats))], want, vocabMagic)
	}

	// model.json is indented JSON ending in a newline (diff- and human-friendly).
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(raw, []byte("}\n")) || !bytes.Contains(raw, []byte("\n  \"format_version\": 1,")) {
		t.Errorf("model.json is not indented JSON with a final newline:\n%s", raw)
	}
	if FormatVersionString() != "bundle-v1" {
		t.Errorf("FormatVersionString() = %q", FormatVersionString())
	}
}

func TestWriteRejectsIncompleteInput(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "m")
	for _, tc := range []struct {
		name  string
		edit  func(m *Manifest, v **featurizer.Vocab)
		wants string
	}{
		{"no name", func(m *Manifest, _ **featurizer.Vocab) { m.Name = "" }, "needs name, version and labels"},
		{"no version", func(m *Manifest, _ **featurizer.Vocab) { m.Version = "" }, "needs name, version and labels"},
		{"no labels", func(m *Manifest, _ **featurizer.Vocab) { m.Labels = nil }, "needs name, version and labels"},
		{"nil vocab", func(_ *Manifest, v **featurizer.Vocab) { *v = nil }, "empty or inconsistent vocabulary"},
		{"empty vocab", func(_ *Manifest, v **featurizer.Vocab) { *v = &featurizer.Vocab{} }, "empty or inconsistent vocabulary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, v, onnx := fixture(t, "v1")
			tc.edit(m, &v)
			err := Write(dir, m, v, onnx)
			if err == nil || !strings.Contains(err.Error(), tc.wants) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Write error %v: want it to name %q and say %q", err, dir, tc.wants)
			}
		})
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("failed writes left %v behind", names(entries))
	}
}

// TestWriteReplacesExisting: a second Write swaps in the new bundle whole,
// drops files the old one had, and leaves no temporary directory behind.
func TestWriteReplacesExisting(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "support")
	writeFixture(t, dir, "v1")
	stale := filepath.Join(dir, "stale.txt")
	if err := os.WriteFile(stale, []byte("from an older bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, onnx2 := writeFixture(t, dir, "v2")

	b, err := Load(dir)
	if err != nil {
		t.Fatalf("Load after replace: %v", err)
	}
	if b.Manifest.Version != "v2" {
		t.Errorf("version %q after replace, want v2", b.Manifest.Version)
	}
	if got, _ := os.ReadFile(b.ModelPath); !bytes.Equal(got, onnx2) {
		t.Errorf("model.onnx is %q, want the new %q", got, onnx2)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file from the old bundle survived the replace: %v", err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(entries); !reflect.DeepEqual(got, []string{"support"}) {
		t.Errorf("parent holds %v, want only [support] (no .support.tmp-* left behind)", got)
	}
	inner, _ := os.ReadDir(dir)
	if got := names(inner); !reflect.DeepEqual(got, []string{FeaturesFile, ManifestFile, ModelFile}) {
		t.Errorf("bundle holds %v", got)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("bundle dir mode %v (err %v), want 0755 (MkdirTemp's 0700 must be widened)", st.Mode().Perm(), err)
	}
}

func TestLoadMissingManifestIsNotBundle(t *testing.T) {
	t.Run("empty dir", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Load(dir)
		if !errors.Is(err, ErrNotBundle) {
			t.Fatalf("Load(empty dir) = %v, want ErrNotBundle", err)
		}
		if !strings.Contains(err.Error(), dir) {
			t.Errorf("error %q does not name the directory", err)
		}
	})
	t.Run("manifest deleted", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "m")
		writeFixture(t, dir, "v1")
		if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); !errors.Is(err, ErrNotBundle) {
			t.Fatalf("Load = %v, want ErrNotBundle", err)
		}
	})
	t.Run("no such dir", func(t *testing.T) {
		if _, err := Load(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNotBundle) {
			t.Fatalf("Load = %v, want ErrNotBundle", err)
		}
	})
}

// TestLoadRefusesDamagedBundles edits one thing in a good bundle and checks
// Load refuses it with a message that says what is wrong.
func TestLoadRefusesDamagedBundles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		wants  string
	}{
		{"tampered model.onnx", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ModelFile)
			b := readFile(t, p)
			b[len(b)-1] ^= 1
			writeFile(t, p, b)
		}, "model.onnx checksum mismatch"},
		{"missing model.onnx", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, ModelFile)); err != nil {
				t.Fatal(err)
			}
		}, "model.onnx"},
		{"truncated features.bin", func(t *testing.T, dir string) {
			p := filepath.Join(dir, FeaturesFile)
			b := readFile(t, p)
			writeFile(t, p, b[:len(b)-5])
		}, "features.bin checksum mismatch"},
		{"truncated features.bin with matching checksum", func(t *testing.T, dir string) {
			// Someone "fixed" the checksum: decoding must still catch it.
			p := filepath.Join(dir, FeaturesFile)
			b := readFile(t, p)
			b = b[:len(b)-4]
			writeFile(t, p, b)
			editManifest(t, dir, func(m map[string]any) {
				m["files"].(map[string]any)[FeaturesFile] = sumHex(b)
			})
		}, "features.bin: size"},
		{"features.bin bad magic with matching checksum", func(t *testing.T, dir string) {
			p := filepath.Join(dir, FeaturesFile)
			b := readFile(t, p)
			copy(b, "NOTVOCAB")
			writeFile(t, p, b)
			editManifest(t, dir, func(m map[string]any) {
				m["files"].(map[string]any)[FeaturesFile] = sumHex(b)
			})
		}, "features.bin: bad header"},
		{"wrong format_version", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["format_version"] = 99 })
		}, "bundle format 99, this build reads 1"},
		{"missing format_version", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { delete(m, "format_version") })
		}, "bundle format 0"},
		{"unknown graph kind", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["graph"].(map[string]any)["kind"] = "mlp" })
		}, `unknown graph kind "mlp"`},
		{"labels and classes disagree", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["labels"] = []string{"a", "b"} })
		}, "2 labels but graph has 3 classes"},
		{"vocabulary size and graph disagree", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["graph"].(map[string]any)["num_features"] = 99 })
		}, "vocabulary has 6 ids, graph 99"},
		{"checksum entry missing", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { delete(m["files"].(map[string]any), ModelFile) })
		}, "model.onnx checksum mismatch"},
		{"model.json not JSON", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, ManifestFile), []byte("{\"name\": "))
		}, "parse model.json"},
		{"invalid featurizer config", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["featurizer"].(map[string]any)["hash_bits"] = 3 })
		}, "hash_bits 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "support")
			writeFixture(t, dir, "v1")
			tc.damage(t, dir)
			b, err := Load(dir)
			if err == nil {
				t.Fatalf("Load accepted a damaged bundle: %+v", b.Manifest)
			}
			if errors.Is(err, ErrNotBundle) {
				t.Errorf("damage reported as ErrNotBundle (callers would retrain over it): %v", err)
			}
			if !strings.Contains(err.Error(), tc.wants) {
				t.Errorf("error %q\n does not say %q", err, tc.wants)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the bundle %s", err, dir)
			}
		})
	}
}

func editManifest(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, ManifestFile)
	var m map[string]any
	if err := json.Unmarshal(readFile(t, p), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, raw)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
