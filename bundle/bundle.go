// Package bundle reads and writes model bundles: a directory holding
// model.onnx (the graph ONNX Runtime runs), features.bin (the learned
// vocabulary and IDF weights) and model.json (everything else a server or an
// auditor needs: labels, featuriser config, metrics, provenance, checksums).
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/scoring"
)

// FormatVersion is bumped on any incompatible change to the bundle layout.
const FormatVersion = 1

// File names inside a bundle directory.
const (
	ManifestFile = "model.json"
	ModelFile    = "model.onnx"
	FeaturesFile = "features.bin"
)

// ErrNotBundle is returned when a directory has no model.json.
var ErrNotBundle = errors.New("not a model bundle (no model.json)")

// Manifest is model.json.
type Manifest struct {
	FormatVersion int               `json:"format_version"`
	Name          string            `json:"name"`
	Version       string            `json:"version"`
	CreatedAt     time.Time         `json:"created_at"`
	Labels        []string          `json:"labels"`
	Featurizer    featurizer.Config `json:"featurizer"`
	Graph         Graph             `json:"graph"`
	// Encoder is set for kinds "encoder" and "hybrid": the bundle then also
	// holds the sentence encoder whose embedding feeds the head.
	Encoder     *EncoderSpec   `json:"encoder,omitempty"`
	HyperParams map[string]any `json:"hyper_params"`
	Metrics     Metrics        `json:"metrics"`
	Training    Training       `json:"training"`
	// Monitoring is the drift monitor's reference, measured on the
	// validation split at training time: label shares, the calibration
	// temperature and each statistic's alarm threshold. Bundles from
	// before it have none and are watched without alarms.
	Monitoring *drift.Reference `json:"monitoring,omitempty"`
	// Abstain is the out-of-scope rule: predictions scoring under its
	// threshold are flagged abstained. Bundles without it never abstain.
	Abstain *Abstain `json:"abstain,omitempty"`
	// Files maps each bundle file to its SHA-256, checked on load so a
	// half-copied or tampered bundle is refused rather than served.
	Files map[string]string `json:"files"`
}

// Graph kinds. A linear graph scores n-gram features; an encoder graph
// scores a sentence embedding; a hybrid graph scores both. The head is the
// same linear-softmax graph in every kind: the embedding enters it as
// features FeatureOffset..FeatureOffset+Dim-1, so one head format, one
// exporter and one ORT binding serve all three (a declared two-stage bundle:
// encoder.onnx, then model.onnx).
const (
	KindLinear  = "linear"
	KindEncoder = "encoder"
	KindHybrid  = "hybrid"
)

// DomainFile holds the drift monitor's domain-classifier reference: a
// sample of validation texts and the test's null threshold
// (drift.DomainReference). Optional: bundles without it skip the test.
const DomainFile = "domain-reference.json"

// Files an encoder or hybrid bundle adds.
const (
	EncoderFile = "encoder.onnx"
	VocabFile   = "vocab.txt"
)

// EncoderSpec describes a bundle's sentence encoder and how its embedding
// enters the head.
type EncoderSpec struct {
	Source       string `json:"source"`  // encoder directory the bundle was trained with
	Variant      string `json:"variant"` // fp32 or int8
	Dim          int    `json:"dim"`
	MaxLength    int    `json:"max_length"`
	Lowercase    bool   `json:"lowercase"`
	StripAccents *bool  `json:"strip_accents,omitempty"`
	// ClsToken and SepToken open and close each text ("" = [CLS] and [SEP]).
	ClsToken      string  `json:"cls_token,omitempty"`
	SepToken      string  `json:"sep_token,omitempty"`
	InputIDs      string  `json:"input_ids"`
	InputMask     string  `json:"attention_mask"`
	Output        string  `json:"output"`
	FeatureOffset int     `json:"feature_offset"` // head feature id of embedding dimension 0
	Scale         float32 `json:"scale"`          // embedding values are multiplied by this before the head
	// Centroid is the mean training embedding: the monitor's embedding
	// shift is each served text's cosine distance to it.
	Centroid []float32 `json:"centroid,omitempty"`
}

// Graph describes the ONNX model's interface.
type Graph struct {
	Kind        string `json:"kind"` // KindLinear, KindEncoder or KindHybrid
	Opset       int    `json:"opset"`
	NumFeatures int    `json:"num_features"`
	NumClasses  int    `json:"num_classes"`
	InputIDs    string `json:"input_ids"`
	InputWeight string `json:"input_weights"`
	Output      string `json:"output"`
}

// Metrics are measured on the validation split (never on training data).
type Metrics struct {
	Validation scoring.Report `json:"validation"`
	TrainAcc   float64        `json:"train_accuracy"`
	Search     []Trial        `json:"search"`
}

// Trial is one hyper-parameter setting tried during the search.
type Trial struct {
	Params      map[string]any `json:"params"`
	BestEpoch   int            `json:"best_epoch"`
	ValAccuracy float64        `json:"val_accuracy"`
	ValMacroF1  float64        `json:"val_macro_f1"`
	// Curve is the validation score after each epoch the trial trained,
	// logged to the tracker as per-epoch metrics.
	Curve []EpochScore `json:"curve,omitempty"`
}

// EpochScore is one epoch's validation score.
type EpochScore struct {
	Epoch       int     `json:"epoch"`
	ValAccuracy float64 `json:"val_accuracy"`
	ValMacroF1  float64 `json:"val_macro_f1"`
	// Losses, where the trainer reports them (fine-tuning).
	TrainLoss *float64 `json:"train_loss,omitempty"`
	ValLoss   *float64 `json:"val_loss,omitempty"`
}

// Training records where the model came from.
type Training struct {
	DataPath    string  `json:"data_path"`
	DataSHA256  string  `json:"data_sha256"`
	TextColumn  string  `json:"text_column"`
	LabelColumn string  `json:"label_column"`
	Rows        int     `json:"rows"`
	TrainRows   int     `json:"train_rows"`
	ValRows     int     `json:"validation_rows"`
	Seed        uint64  `json:"seed"`
	ValFraction float64 `json:"validation_fraction"`
	Seconds     float64 `json:"seconds"`
	GoVersion   string  `json:"go_version"`
}

// Write creates dir atomically: files go to a sibling temporary directory
// that is renamed into place, so readers never see a partial bundle. An
// existing dir is replaced. vocab is unused for encoder-only bundles; extra
// maps further bundle file names to files to copy in (the encoder).
func Write(dir string, m *Manifest, vocab *featurizer.Vocab, onnx []byte, extra ...CopyFile) error {
	if m.Name == "" || m.Version == "" || len(m.Labels) == 0 {
		return fmt.Errorf("write bundle %q: manifest needs name, version and labels", dir)
	}
	m.FormatVersion = FormatVersion
	m.Files = map[string]string{ModelFile: sum(onnx)}
	contents := map[string][]byte{ModelFile: onnx}
	if m.UsesNgrams() {
		feats, err := encodeVocab(vocab)
		if err != nil {
			return fmt.Errorf("write bundle %q: %w", dir, err)
		}
		m.Files[FeaturesFile] = sum(feats)
		contents[FeaturesFile] = feats
	}
	for _, f := range extra {
		data := f.Data
		if data == nil {
			var err error
			if data, err = os.ReadFile(f.From); err != nil {
				return fmt.Errorf("write bundle %q: %w", dir, err)
			}
		}
		m.Files[f.Name] = sum(data)
		if f.SHA256 != "" && f.SHA256 != m.Files[f.Name] {
			return fmt.Errorf("write bundle %q: %s changed since training used it (checksum mismatch); retrain", dir, f.From)
		}
		contents[f.Name] = data
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write bundle %q: encode manifest: %w", dir, err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("write bundle %q: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("write bundle %q: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	contents[ManifestFile] = append(manifest, '\n')
	for name, data := range contents {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return fmt.Errorf("write bundle %q: %w", dir, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("write bundle %q: %w", dir, err)
	}
	// Move the old bundle aside before renaming the new one in, so the
	// path is only ever missing for the instant between two renames, and a
	// failed rename puts the old bundle back.
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("write bundle %q: move old bundle aside: %w", dir, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("write bundle %q: %w", dir, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// CopyFile is a file copied into a bundle under Name (from From, or Data
// when set). A non-empty SHA256 must match what is copied, so a source
// changed since it was used for training is refused instead of shipped.
type CopyFile struct {
	Name, From, SHA256 string
	Data               []byte
}

// Bundle is a loaded, verified bundle.
type Bundle struct {
	Dir        string
	Manifest   Manifest
	Featurizer *featurizer.Featurizer // nil for KindEncoder
	ModelPath  string
}

// checkEncoder verifies the encoder section agrees with the kind and the
// head, so a hand-edited model.json cannot make serving run an unchecked
// encoder or feed the head the wrong features.
func (m Manifest) checkEncoder() error {
	e := m.Encoder
	if m.Graph.Kind == KindLinear {
		if e != nil {
			return errors.New("a linear bundle has an encoder section")
		}
		return nil
	}
	switch {
	case e == nil:
		return fmt.Errorf("%s bundle has no encoder section", m.Graph.Kind)
	case e.Dim <= 0 || e.FeatureOffset <= 0 || e.FeatureOffset+e.Dim != m.Graph.NumFeatures:
		return fmt.Errorf("encoder section: dim %d at feature offset %d does not fit a head of %d features", e.Dim, e.FeatureOffset, m.Graph.NumFeatures)
	case m.Graph.Kind == KindEncoder && e.FeatureOffset != 1:
		return fmt.Errorf("encoder-only bundle with feature offset %d, want 1", e.FeatureOffset)
	case e.Variant != "fp32" && e.Variant != "int8":
		return fmt.Errorf("encoder section: variant %q, want fp32 or int8", e.Variant)
	case !(e.Scale > 0) || math.IsInf(float64(e.Scale), 0):
		return fmt.Errorf("encoder section: scale %v, want a finite number > 0", e.Scale)
	case e.MaxLength < 2 || e.InputIDs == "" || e.InputMask == "" || e.Output == "":
		return errors.New("encoder section: max_length (>= 2) and the graph's input and output names are required")
	}
	return nil
}

// UsesNgrams reports whether the head reads n-gram features.
func (m Manifest) UsesNgrams() bool { return m.Graph.Kind != KindEncoder }

// Path is the location of a bundle file.
func (b *Bundle) Path(name string) string { return filepath.Join(b.Dir, name) }

// Load reads and verifies a bundle directory.
func Load(dir string) (*Bundle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load model %q: %w", dir, ErrNotBundle)
	}
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("load model %q: parse %s: %w", dir, ManifestFile, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("load model %q: bundle format %d, this build reads %d: retrain or upgrade triage", dir, m.FormatVersion, FormatVersion)
	}
	need := []string{ModelFile}
	switch m.Graph.Kind {
	case KindLinear:
		need = append(need, FeaturesFile)
	case KindHybrid:
		need = append(need, FeaturesFile, EncoderFile, VocabFile)
	case KindEncoder:
		need = append(need, EncoderFile, VocabFile)
	default:
		return nil, fmt.Errorf("load model %q: unknown graph kind %q", dir, m.Graph.Kind)
	}
	if err := m.checkEncoder(); err != nil {
		return nil, fmt.Errorf("load model %q: %w", dir, err)
	}
	if err := m.Abstain.check(m); err != nil {
		return nil, fmt.Errorf("load model %q: %w", dir, err)
	}
	if len(m.Labels) != m.Graph.NumClasses || len(m.Labels) < 2 {
		return nil, fmt.Errorf("load model %q: %d labels but graph has %d classes", dir, len(m.Labels), m.Graph.NumClasses)
	}
	files := map[string][]byte{}
	for _, name := range need {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load model %q: %w", dir, err)
		}
		if want := m.Files[name]; want != sum(data) {
			return nil, fmt.Errorf("load model %q: %s checksum mismatch (bundle corrupt or modified)", dir, name)
		}
		if name == FeaturesFile {
			files[name] = data // the others are read again by ONNX Runtime and the tokenizer
		}
	}
	b := &Bundle{Dir: dir, Manifest: m, ModelPath: filepath.Join(dir, ModelFile)}
	if !m.UsesNgrams() {
		return b, nil
	}
	vocab, err := decodeVocab(files[FeaturesFile])
	if err != nil {
		return nil, fmt.Errorf("load model %q: %s: %w", dir, FeaturesFile, err)
	}
	ngram := m.Graph.NumFeatures
	if m.Encoder != nil {
		ngram = m.Encoder.FeatureOffset
	}
	if vocab.Size() != ngram {
		return nil, fmt.Errorf("load model %q: vocabulary has %d ids, graph %d", dir, vocab.Size(), ngram)
	}
	b.Featurizer, err = featurizer.New(m.Featurizer, vocab)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", dir, err)
	}
	return b, nil
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// features.bin: magic, uint32 count, count uint32 buckets, count float32
// IDF weights, all little-endian. A flat binary keeps big vocabularies small
// and fast to load compared with JSON.
var vocabMagic = []byte("TRGVOC01")

func encodeVocab(v *featurizer.Vocab) ([]byte, error) {
	if v == nil || len(v.Buckets) == 0 || len(v.Buckets) != len(v.IDF) {
		return nil, errors.New("empty or inconsistent vocabulary")
	}
	var buf bytes.Buffer
	buf.Write(vocabMagic)
	n := len(v.Buckets)
	out := make([]byte, 4+8*n)
	binary.LittleEndian.PutUint32(out, uint32(n))
	for i, b := range v.Buckets {
		binary.LittleEndian.PutUint32(out[4+4*i:], b)
		binary.LittleEndian.PutUint32(out[4+4*n+4*i:], math.Float32bits(v.IDF[i]))
	}
	buf.Write(out)
	return buf.Bytes(), nil
}

func decodeVocab(b []byte) (*featurizer.Vocab, error) {
	if len(b) < len(vocabMagic)+4 || !bytes.Equal(b[:len(vocabMagic)], vocabMagic) {
		return nil, errors.New("bad header")
	}
	b = b[len(vocabMagic):]
	n := int(binary.LittleEndian.Uint32(b))
	if len(b) != 4+8*n {
		return nil, fmt.Errorf("size %d does not match %d entries", len(b), n)
	}
	buckets, idf := make([]uint32, n), make([]float32, n)
	for i := range n {
		buckets[i] = binary.LittleEndian.Uint32(b[4+4*i:])
		idf[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4+4*n+4*i:]))
	}
	return featurizer.NewVocab(buckets, idf)
}

// FormatVersionString is FormatVersion for humans ("bundle-v1").
func FormatVersionString() string { return fmt.Sprintf("bundle-v%d", FormatVersion) }
