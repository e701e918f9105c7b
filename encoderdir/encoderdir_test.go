package encoderdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReadVerify(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, VocabFile), []byte("[CLS]\n[SEP]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := FileSHA256(filepath.Join(dir, VocabFile))
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{FormatVersion: FormatVersion, HiddenSize: 8, MaxLength: 16, Files: map[string]string{VocabFile: sum}}
	if err := Write(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.HiddenSize != 8 || got.Files[VocabFile] != sum {
		t.Errorf("read back %+v", got)
	}
	if err := Verify(dir, got, VocabFile); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := Verify(dir, got, Int8File); err == nil || !strings.Contains(err.Error(), "quantize-encoder.py") {
		t.Errorf("unlisted int8 file: %v, want the quantise hint", err)
	}
	if err := os.WriteFile(filepath.Join(dir, VocabFile), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir, got, VocabFile); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("modified vocab: %v, want a checksum mismatch", err)
	}
}

func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "triage encoder convert") {
		t.Errorf("missing manifest: %v, want how to make one", err)
	}
	if err := Write(dir, &Manifest{FormatVersion: 2, HiddenSize: 8, MaxLength: 16}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("future format: %v", err)
	}
}

func TestVariantFile(t *testing.T) {
	for v, want := range map[string]string{"": ModelFile, VariantFP32: ModelFile, VariantInt8: Int8File} {
		if got, err := VariantFile(v); err != nil || got != want {
			t.Errorf("VariantFile(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	if _, err := VariantFile("fp16"); err == nil {
		t.Error("fp16 accepted")
	}
}
