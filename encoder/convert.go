package encoder

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/triage-ml/triage/internal/onnxgraph"
	"github.com/triage-ml/triage/tokenizer"
)

// Files of a converted encoder directory.
const (
	ManifestFile = "encoder.json"
	ModelFile    = "encoder.onnx"      // fp32
	Int8File     = "encoder-int8.onnx" // dynamic-quantised variant, made by scripts/quantize-encoder.py
	VocabFile    = "vocab.txt"
	TokenizerCfg = "tokenizer.json"
)

// Variants an encoder directory may hold.
const (
	VariantFP32 = "fp32"
	VariantInt8 = "int8"
)

// Manifest is encoder.json: what the graph expects and where it came from.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	Architecture  string    `json:"architecture"` // "bert"
	Source        string    `json:"source"`       // checkpoint directory converted
	SourceSHA256  string    `json:"source_sha256"`
	CreatedAt     time.Time `json:"created_at"`
	HiddenSize    int       `json:"hidden_size"`
	Layers        int       `json:"layers"`
	Heads         int       `json:"heads"`
	VocabSize     int       `json:"vocab_size"`
	MaxLength     int       `json:"max_length"` // tokens incl. [CLS]/[SEP]; longer texts are truncated
	Pooling       string    `json:"pooling"`
	Normalize     bool      `json:"normalize"`
	Lowercase     bool      `json:"lowercase"`
	StripAccents  *bool     `json:"strip_accents,omitempty"`
	InputIDs      string    `json:"input_ids"`
	InputMask     string    `json:"attention_mask"`
	Output        string    `json:"output"`
	GoVersion     string    `json:"go_version"`
	// Files maps each file to its SHA-256 (the int8 variant is added when the
	// quantisation step runs).
	Files map[string]string `json:"files"`
}

// ConvertOptions override what the checkpoint's sentence-transformers files say.
type ConvertOptions struct {
	MaxLength int    // 0 = sentence_bert_config.json's max_seq_length, else max_position_embeddings
	Pooling   string // "" = 1_Pooling/config.json, else mean
	Normalize *bool  // nil = whether modules.json has a Normalize step (true when there is no modules.json)
}

// Convert turns the BERT checkpoint in src into an encoder directory dst
// (written to a temporary sibling and renamed, so dst is never partial).
func Convert(src, dst string, o ConvertOptions) (*Manifest, error) {
	cfg, err := ReadBertConfig(src)
	if err != nil {
		return nil, err
	}
	st, err := readSentenceTransformers(src)
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	if o.MaxLength == 0 {
		o.MaxLength = st.maxLength
	}
	if o.MaxLength == 0 {
		o.MaxLength = cfg.MaxPositionEmbeddings
	}
	if o.MaxLength < 2 || o.MaxLength > cfg.MaxPositionEmbeddings {
		return nil, fmt.Errorf("convert %q: max length %d must be in [2, %d] (max_position_embeddings)", src, o.MaxLength, cfg.MaxPositionEmbeddings)
	}
	if o.Pooling == "" {
		o.Pooling = st.pooling
	}
	normalize := st.normalize
	if o.Normalize != nil {
		normalize = *o.Normalize
	}
	// The tokenizer as Triage will run it: tokenizer.json when present (its
	// normaliser decides casing), else vocab.txt + tokenizer_config.json.
	tok, err := tokenizer.LoadDir(src)
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	if tok.Size() > cfg.VocabSize {
		return nil, fmt.Errorf("convert %q: the tokenizer has %d tokens but the model's vocab_size is %d: ids past it would fail at run time",
			src, tok.Size(), cfg.VocabSize)
	}
	weightsPath := filepath.Join(src, "model.safetensors")
	tensors, err := ReadSafetensors(weightsPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("convert %q: %w (Triage reads safetensors weights; convert pytorch_model.bin first)", src, err)
	}
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	g, err := BuildBert(tensors, cfg, GraphOptions{Pooling: o.Pooling, Normalize: normalize})
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	onnx, err := g.Marshal(onnxgraphModel(src))
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	srcSum, err := FileSHA256(weightsPath)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		FormatVersion: 1, Architecture: "bert", Source: src, SourceSHA256: srcSum,
		CreatedAt:  time.Now().UTC().Truncate(time.Second),
		HiddenSize: cfg.HiddenSize, Layers: cfg.NumHiddenLayers, Heads: cfg.NumAttentionHeads, VocabSize: cfg.VocabSize,
		MaxLength: o.MaxLength, Pooling: cmp.Or(o.Pooling, PoolingMean), Normalize: normalize,
		Lowercase: tok.Options().Lowercase, StripAccents: tok.Options().StripAccents,
		InputIDs: InputIDs, InputMask: InputMask, Output: OutputEmbed, GoVersion: runtime.Version(),
		Files: map[string]string{},
	}

	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".tmp-")
	if err == nil {
		err = os.Chmod(tmp, 0o755) // MkdirTemp makes 0700; encoders are shared like any model file
	}
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, ModelFile), onnx, 0o644); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	m.Files[ModelFile] = sha(onnx)
	// vocab.txt is written from the loaded tokenizer, so it holds exactly the
	// ids Triage tokenised with, whichever file they came from.
	var vocab bytes.Buffer
	if err := tok.WriteVocab(&vocab); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, VocabFile), vocab.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	m.Files[VocabFile] = sha(vocab.Bytes())
	// tokenizer.json travels along for Python tools (the benchmark baseline).
	if sum, err := copyFile(filepath.Join(src, TokenizerCfg), filepath.Join(tmp, TokenizerCfg)); err == nil {
		m.Files[TokenizerCfg] = sum
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := WriteManifest(tmp, m); err != nil {
		return nil, err
	}
	// Move the old encoder aside, so a failed rename can put it back.
	old := ""
	if _, err := os.Stat(dst); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dst, old); err != nil {
			return nil, fmt.Errorf("convert: move old %q aside: %w", dst, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		if old != "" {
			os.Rename(old, dst)
		}
		return nil, fmt.Errorf("convert: %w", err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return m, nil
}

// WriteManifest writes dir/encoder.json.
func WriteManifest(dir string, m *Manifest) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode encoder manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write encoder manifest: %w", err)
	}
	return nil
}

// ReadManifest reads dir/encoder.json.
func ReadManifest(dir string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("encoder %q: no %s; make one with `triage encoder convert` (or `make encoder`)", dir, ManifestFile)
	}
	if err != nil {
		return nil, fmt.Errorf("encoder %q: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("encoder %q: %s: %w", dir, ManifestFile, err)
	}
	if m.FormatVersion != 1 || m.HiddenSize <= 0 || m.MaxLength < 2 {
		return nil, fmt.Errorf("encoder %q: %s is not a Triage encoder manifest (format %d, hidden %d, max length %d)",
			dir, ManifestFile, m.FormatVersion, m.HiddenSize, m.MaxLength)
	}
	return &m, nil
}

// VariantFile names the ONNX file of a variant.
func VariantFile(variant string) (string, error) {
	switch variant {
	case VariantFP32, "":
		return ModelFile, nil
	case VariantInt8:
		return Int8File, nil
	}
	return "", fmt.Errorf("encoder variant %q: use %q or %q", variant, VariantFP32, VariantInt8)
}

// stConfig is what sentence-transformers' own files say about the pipeline.
type stConfig struct {
	maxLength int
	pooling   string
	normalize bool
}

func readSentenceTransformers(dir string) (stConfig, error) {
	c := stConfig{pooling: PoolingMean, normalize: true}
	var sb struct {
		MaxSeqLength int `json:"max_seq_length"`
	}
	if ok, err := readJSON(filepath.Join(dir, "sentence_bert_config.json"), &sb); err != nil {
		return c, err
	} else if ok {
		c.maxLength = sb.MaxSeqLength
	}
	var modules []struct {
		Path string `json:"path"`
		Type string `json:"type"`
	}
	ok, err := readJSON(filepath.Join(dir, "modules.json"), &modules)
	if err != nil || !ok {
		return c, err
	}
	c.normalize = false
	for _, m := range modules {
		switch m.Type {
		case "sentence_transformers.models.Transformer":
		case "sentence_transformers.models.Normalize":
			c.normalize = true
		case "sentence_transformers.models.Pooling":
			var p struct {
				CLS  bool `json:"pooling_mode_cls_token"`
				Mean bool `json:"pooling_mode_mean_tokens"`
				Max  bool `json:"pooling_mode_max_tokens"`
				Sqrt bool `json:"pooling_mode_mean_sqrt_len_tokens"`
			}
			if _, err := readJSON(filepath.Join(dir, m.Path, "config.json"), &p); err != nil {
				return c, err
			}
			n := 0
			for _, on := range []bool{p.CLS, p.Mean, p.Max, p.Sqrt} {
				if on {
					n++
				}
			}
			switch {
			case n == 1 && p.Mean:
				c.pooling = PoolingMean
			case n == 1 && p.CLS:
				c.pooling = PoolingCLS
			default:
				return c, fmt.Errorf("%s: only a single mean or cls pooling mode is supported", filepath.Join(m.Path, "config.json"))
			}
		default:
			// Silently skipping a stage (a Dense projection, say) would give
			// embeddings that differ from the model's own.
			return c, fmt.Errorf("modules.json: module %q (%s) is not supported; Triage converts Transformer, Pooling and Normalize", m.Path, m.Type)
		}
	}
	return c, nil
}

func readJSON(path string, v any) (bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func copyFile(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), out.Close()
}

// FileSHA256 hashes a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func onnxgraphModel(src string) onnxgraph.Model {
	return onnxgraph.Model{
		ProducerVersion: "triage encoder converter",
		DocString:       "BERT sentence encoder converted by Triage from " + filepath.Base(filepath.Clean(src)),
	}
}
