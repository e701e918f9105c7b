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

	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/internal/onnxgraph"
	"github.com/triage-ml/triage/tokenizer"
)

// ConvertOptions override what the checkpoint's sentence-transformers files say.
type ConvertOptions struct {
	MaxLength int    // 0 = sentence_bert_config.json's max_seq_length, else max_position_embeddings
	Pooling   string // "" = 1_Pooling/config.json, else mean
	Normalize *bool  // nil = whether modules.json has a Normalize step (true when there is no modules.json)
}

// Convert turns the BERT checkpoint in src into an encoder folder dst in
// encoderdir's format (written to a temporary sibling and renamed, so dst
// is never partial).
func Convert(src, dst string, o ConvertOptions) (*encoderdir.Manifest, error) {
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
		o.MaxLength = cfg.MaxTokens()
	}
	if o.MaxLength < 2 || o.MaxLength > cfg.MaxTokens() {
		return nil, fmt.Errorf("convert %q: max length %d must be in [2, %d] (what max_position_embeddings covers)", src, o.MaxLength, cfg.MaxTokens())
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
	g, err := BuildEncoder(tensors, cfg, GraphOptions{Pooling: o.Pooling, Normalize: normalize, MaxLength: o.MaxLength})
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	onnx, err := g.Marshal(onnxgraphModel(src))
	if err != nil {
		return nil, fmt.Errorf("convert %q: %w", src, err)
	}
	srcSum, err := encoderdir.FileSHA256(weightsPath)
	if err != nil {
		return nil, err
	}
	m := &encoderdir.Manifest{
		FormatVersion: encoderdir.FormatVersion, Architecture: cfg.architecture(), Source: src, SourceSHA256: srcSum,
		CreatedAt:  time.Now().UTC().Truncate(time.Second),
		HiddenSize: cfg.HiddenSize, Layers: cfg.NumHiddenLayers, Heads: cfg.NumAttentionHeads, VocabSize: cfg.VocabSize,
		MaxLength: o.MaxLength, Pooling: cmp.Or(o.Pooling, PoolingMean), Normalize: normalize,
		Lowercase: tok.Options().Lowercase, StripAccents: tok.Options().StripAccents,
		ClsToken: specialOrDefault(tok.Options().ClsToken, tokenizer.CLS), SepToken: specialOrDefault(tok.Options().SepToken, tokenizer.SEP),
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
	if err := os.WriteFile(filepath.Join(tmp, encoderdir.ModelFile), onnx, 0o644); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	m.Files[encoderdir.ModelFile] = sha(onnx)
	// vocab.txt is written from the loaded tokenizer, so it holds exactly the
	// ids Triage tokenised with, whichever file they came from.
	var vocab bytes.Buffer
	if err := tok.WriteVocab(&vocab); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, encoderdir.VocabFile), vocab.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	m.Files[encoderdir.VocabFile] = sha(vocab.Bytes())
	// tokenizer.json travels along for Python tools (the benchmark baseline).
	if sum, err := copyFile(filepath.Join(src, encoderdir.TokenizerFile), filepath.Join(tmp, encoderdir.TokenizerFile)); err == nil {
		m.Files[encoderdir.TokenizerFile] = sum
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := encoderdir.Write(tmp, m); err != nil {
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

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func onnxgraphModel(src string) onnxgraph.Model {
	return onnxgraph.Model{
		ProducerVersion: "triage encoder converter",
		DocString:       "BERT-family sentence encoder converted by Triage from " + filepath.Base(filepath.Clean(src)),
	}
}

// CheckpointDefaults are what the checkpoint's sentence-transformers files
// say of pooling and sequence length (mean and 0 when it has none): the
// settings a fine-tuning run starts from.
func CheckpointDefaults(dir string) (pooling string, maxLength int, err error) {
	st, err := readSentenceTransformers(dir)
	if err != nil {
		return "", 0, fmt.Errorf("read %q: %w", dir, err)
	}
	return cmp.Or(st.pooling, PoolingMean), st.maxLength, nil
}

// specialOrDefault records a boundary token only when it is not BERT's, so
// BERT encoders' manifests stay as they were.
func specialOrDefault(token, bert string) string {
	if token == bert {
		return ""
	}
	return token
}
