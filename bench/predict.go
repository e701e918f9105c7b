package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/inference"
)

// Engine names in PredictRow.Engine.
const (
	EnginePureGo = "pure Go"      // inference.Reference: the baseline
	EngineORT    = "ONNX Runtime" // inference.Model
)

// PredictConfig configures Predict.
type PredictConfig struct {
	ModelDir string
	// Model opens the ONNX Runtime engine; its TopK also sizes the pure-Go
	// reference's output so both engines do the same top-k work.
	Model      inference.ModelOptions
	Data       string // file whose texts are classified
	TextColumn string
	Batches    []int
	Duration   time.Duration // measuring time per batch size and engine

	// OnStart, if set, is called once the model and texts are loaded,
	// before anything is measured.
	OnStart func(PredictInfo)
	// OnRow, if set, is called as each row is measured: a run takes
	// Duration × 4 per batch size, too long to report only at the end.
	OnRow func(PredictRow)
}

// PredictInfo describes what Predict measures.
type PredictInfo struct {
	Model, Version    string
	Features, Classes int
	Texts             int
	GOMAXPROCS        int
}

// PredictRow is one engine at one batch size.
type PredictRow struct {
	Batch  int
	Engine string // EnginePureGo or EngineORT
	// Full is end to end: featurise, model, top-k; Rate in texts/s.
	Full Timing
	// ModelOnly excludes featurisation (texts are featurised beforehand).
	ModelOnly Timing
	// Baseline marks the pure-Go row; VsBaseline is Full.Rate over the
	// baseline's at the same batch size (1 for the baseline itself).
	Baseline   bool
	VsBaseline float64
}

// PredictResult is everything Predict measured, in the order measured.
type PredictResult struct {
	Info PredictInfo
	Rows []PredictRow
}

// Predict measures texts/s and call latency through ONNX Runtime beside the
// pure-Go reference on the same model and texts, for each batch size.
func Predict(ctx context.Context, cfg PredictConfig) (PredictResult, error) {
	m, err := inference.Open(cfg.ModelDir, cfg.Model)
	if err != nil {
		return PredictResult{}, fmt.Errorf("open model: %w", err)
	}
	defer m.Close()
	ref, err := inference.OpenReference(cfg.ModelDir, cfg.Model.TopK)
	if err != nil {
		return PredictResult{}, fmt.Errorf("open reference: %w", err)
	}
	texts, err := loadTexts(cfg.Data, cfg.TextColumn)
	if err != nil {
		return PredictResult{}, err
	}
	// Featurised once: the model-only column measures the model alone.
	fz := m.Featurizer()
	vecs := make([]featurizer.Vector, len(texts))
	for i, t := range texts {
		vecs[i] = fz.Transform(t)
	}
	man := m.Manifest()
	res := PredictResult{Info: PredictInfo{
		Model: man.Name, Version: man.Version,
		Features: man.Graph.NumFeatures, Classes: man.Graph.NumClasses,
		Texts: len(texts), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}}
	if cfg.OnStart != nil {
		cfg.OnStart(res.Info)
	}
	// The baseline goes first: the other engine's ratio needs its rate.
	engines := []struct {
		name     string
		baseline bool
		full     func([]string) error
		model    func([]featurizer.Vector) error
	}{
		{EnginePureGo, true, func(ts []string) error { _, err := ref.Predict(ctx, ts); return err },
			func(vs []featurizer.Vector) error { _, err := ref.Probabilities(vs); return err }},
		{EngineORT, false, func(ts []string) error { _, err := m.Predict(ctx, ts); return err },
			func(vs []featurizer.Vector) error { _, err := m.Probabilities(ctx, vs); return err }},
	}
	for _, bs := range cfg.Batches {
		var baseRate float64
		for _, e := range engines {
			full, err := measure(ctx, texts, bs, cfg.Duration, e.full)
			if err != nil {
				return res, fmt.Errorf("bench %s batch %d: %w", e.name, bs, err)
			}
			modelOnly, err := measure(ctx, vecs, bs, cfg.Duration, e.model)
			if err != nil {
				return res, fmt.Errorf("bench %s batch %d: %w", e.name, bs, err)
			}
			row := PredictRow{Batch: bs, Engine: e.name, Full: full, ModelOnly: modelOnly, Baseline: e.baseline, VsBaseline: 1}
			if e.baseline {
				baseRate = full.Rate
			} else {
				row.VsBaseline = full.Rate / baseRate
			}
			res.Rows = append(res.Rows, row)
			if cfg.OnRow != nil {
				cfg.OnRow(row)
			}
		}
	}
	return res, nil
}
