// Package encoderdir is the on-disk format of a converted sentence encoder
// folder: encoder.json, the file names and variants it holds, and reading
// and checking it. The converter (package encoder) writes it; serving and
// training read it without depending on the converter.
package encoderdir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Files of an encoder folder.
const (
	ManifestFile  = "encoder.json"
	ModelFile     = "encoder.onnx"      // fp32
	Int8File      = "encoder-int8.onnx" // dynamic-quantised variant, made by scripts/quantize-encoder.py
	VocabFile     = "vocab.txt"
	TokenizerFile = "tokenizer.json" // for Python tools (the benchmark baseline)
)

// Variants an encoder folder may hold.
const (
	VariantFP32 = "fp32"
	VariantInt8 = "int8"
)

// FormatVersion is the encoder.json format this package reads and writes.
const FormatVersion = 1

// Manifest is encoder.json: what the graph expects and where it came from.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	Architecture  string    `json:"architecture"` // "bert" or "mpnet"
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
	// ClsToken and SepToken open and close each text ("" = [CLS] and [SEP]).
	ClsToken  string `json:"cls_token,omitempty"`
	SepToken  string `json:"sep_token,omitempty"`
	InputIDs  string `json:"input_ids"`
	InputMask string `json:"attention_mask"`
	Output    string `json:"output"`
	GoVersion string `json:"go_version"`
	// Files maps each file to its SHA-256 (the int8 variant is added when the
	// quantisation step runs).
	Files map[string]string `json:"files"`
}

// Write writes dir/encoder.json.
func Write(dir string, m *Manifest) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode encoder manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write encoder manifest: %w", err)
	}
	return nil
}

// Read reads dir/encoder.json.
func Read(dir string) (*Manifest, error) {
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
	if m.FormatVersion != FormatVersion || m.HiddenSize <= 0 || m.MaxLength < 2 {
		return nil, fmt.Errorf("encoder %q: %s is not a Triage encoder manifest (format %d, hidden %d, max length %d)",
			dir, ManifestFile, m.FormatVersion, m.HiddenSize, m.MaxLength)
	}
	return &m, nil
}

// Verify checks that the named files in dir are the ones m lists, so a
// folder rebuilt under a running process is never mixed with its old
// manifest.
func Verify(dir string, m *Manifest, names ...string) error {
	for _, name := range names {
		want, ok := m.Files[name]
		if !ok {
			return fmt.Errorf("encoder %q: %s is not listed in %s (for int8, run scripts/quantize-encoder.py)", dir, name, ManifestFile)
		}
		got, err := FileSHA256(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("encoder %q: %w", dir, err)
		}
		if got != want {
			return fmt.Errorf("encoder %q: %s checksum mismatch with %s (folder modified or rebuilt?)", dir, name, ManifestFile)
		}
	}
	return nil
}

// VariantFile names the ONNX file of a variant ("" is fp32).
func VariantFile(variant string) (string, error) {
	switch variant {
	case VariantFP32, "":
		return ModelFile, nil
	case VariantInt8:
		return Int8File, nil
	}
	return "", fmt.Errorf("encoder variant %q: use %q or %q", variant, VariantFP32, VariantInt8)
}

// FileSHA256 hashes a file, as Manifest.Files records it.
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
