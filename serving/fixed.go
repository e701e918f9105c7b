package serving

import (
	"path/filepath"
	"sync"

	"github.com/triage-ml/triage/inference"
)

// Fixed loads bundles given by folder (`--route topic=DIR`, `--model
// name=DIR`): fixed versions that never swap, for tests, benchmarks and
// setups without a registry. Each folder is loaded once however many routes
// or names refer to it, so consumer and gateway share one copy.
type Fixed struct {
	opts inference.ModelOptions

	mu    sync.Mutex
	byDir map[string]*inference.Model
}

// NewFixed returns an empty cache.
func NewFixed(opts inference.ModelOptions) *Fixed {
	return &Fixed{opts: opts, byDir: map[string]*inference.Model{}}
}

// Get loads dir, or returns the copy already loaded.
func (f *Fixed) Get(dir string) (*inference.Model, error) {
	dir = filepath.Clean(dir)
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.byDir[dir]; ok {
		return m, nil
	}
	m, err := inference.Open(dir, f.opts)
	if err != nil {
		return nil, err
	}
	f.byDir[dir] = m
	return m, nil
}

// Close releases every loaded bundle.
func (f *Fixed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for dir, m := range f.byDir {
		m.Close()
		delete(f.byDir, dir)
	}
}
