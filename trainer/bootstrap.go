package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/registry"
)

// DefaultModel says how a default model is trained on first start.
type DefaultModel struct {
	Name, File, TextColumn, LabelColumn string
	// AbstainPrecision is Options.AbstainPrecision (0: the default;
	// negative: no abstention rule). Retraining keeps the champion's.
	AbstainPrecision float64
}

// DefaultModels are the two models `triage dev` serves out of the box.
// Sentiment has no out-of-scope text, and at its validation accuracy (0.79)
// the default target would make the reviews model abstain on most of it.
var DefaultModels = []DefaultModel{
	{"support", "banking77/train.csv", "text", "category", 0},
	{"reviews", "movie-reviews/train.csv", "text", "label", -1},
}

// BootstrapConfig configures Bootstrap.
type BootstrapConfig struct {
	Store registry.Store
	// Promote makes a version the champion (and announces it); default
	// Store.Promote.
	Promote func(ctx context.Context, name, version, who, why string) (registry.Move, error)
	Models  []DefaultModel // default DefaultModels
	// Datasets is the folder DefaultModel.File is relative to.
	Datasets string
	// WorkDir is where bundles are trained before registration.
	WorkDir string
	// Legacy, when set, is a folder of bundles from before the registry
	// (LEGACY/NAME/): such a bundle is registered instead of retraining.
	Legacy  string
	Encoder *EncoderSource
	Logger  *slog.Logger
}

// Bootstrap gives every default model a champion: a model that already has
// one is checked against the encoder settings; one with versions but no
// champion gets its latest promoted; one with nothing is registered from
// the legacy folder or trained on its dataset.
func Bootstrap(ctx context.Context, cfg BootstrapConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Promote == nil {
		cfg.Promote = cfg.Store.Promote
	}
	models := cfg.Models
	if models == nil {
		models = DefaultModels
	}
	for _, dm := range models {
		if err := bootstrapOne(ctx, cfg, dm); err != nil {
			return fmt.Errorf("default model %s: %w", dm.Name, err)
		}
	}
	return nil
}

func bootstrapOne(ctx context.Context, cfg BootstrapConfig, dm DefaultModel) error {
	const who, why = "triage bootstrap", "default model on first start"
	if v, err := cfg.Store.Resolve(ctx, dm.Name, registry.Champion); err == nil {
		b, err := bundle.Load(v.Dir)
		if err != nil {
			return fmt.Errorf("champion %s: %w", v.Version, err)
		}
		if err := SameEncoder(b.Manifest, cfg.Encoder); err != nil {
			return fmt.Errorf("champion %s in %s: %w; promote a matching version or use another --registry", v.Version, v.Dir, err)
		}
		return nil
	} else if !errors.Is(err, registry.ErrNotFound) {
		return err
	}
	if vs, err := cfg.Store.Versions(ctx, dm.Name); err == nil && len(vs) > 0 {
		latest := vs[len(vs)-1]
		_, err := cfg.Promote(ctx, dm.Name, latest.Version, who, "no champion: latest version")
		return err
	}
	dir := ""
	if cfg.Legacy != "" {
		legacy := filepath.Join(cfg.Legacy, dm.Name)
		if b, err := bundle.Load(legacy); err == nil && SameEncoder(b.Manifest, cfg.Encoder) == nil {
			cfg.Logger.Info("registering a bundle from before the registry", "model", dm.Name, "dir", legacy)
			dir = legacy
		}
	}
	if dir == "" {
		data := filepath.Join(cfg.Datasets, dm.File)
		if _, err := os.Stat(data); err != nil {
			return fmt.Errorf("no version registered and its training data %s is missing: run `make data` to fetch it, or point TRIAGE_DATA_DIR or --datasets at the folder holding it", data)
		}
		dir = filepath.Join(cfg.WorkDir, dm.Name+"-bootstrap")
		cfg.Logger.Info("training default model (first start)", "model", dm.Name, "data", data, "hybrid", cfg.Encoder != nil)
		if _, err := Train(ctx, Options{DataPath: data, TextColumn: dm.TextColumn, LabelColumn: dm.LabelColumn,
			OutDir: dir, Name: dm.Name, Seed: 42, Logger: cfg.Logger, Encoder: cfg.Encoder, AbstainPrecision: dm.AbstainPrecision}); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		return err
	}
	v, err := cfg.Store.Register(ctx, dm.Name, dir, LineageOf(b.Manifest), who)
	if err != nil {
		return err
	}
	_, err = cfg.Promote(ctx, dm.Name, v.Version, who, why)
	return err
}

// LineageOf is what a bundle's manifest says about where it came from.
func LineageOf(m bundle.Manifest) registry.Lineage {
	return registry.Lineage{
		DataPath: m.Training.DataPath, DataSHA256: m.Training.DataSHA256,
		Metrics: map[string]float64{"val_accuracy": m.Metrics.Validation.Accuracy, "val_macro_f1": m.Metrics.Validation.MacroF1,
			"train_accuracy": m.Metrics.TrainAcc},
		HyperParams: m.HyperParams, CodeVersion: m.Training.GoVersion,
	}
}

// SameEncoder reports whether a model was trained the way the flags ask: no
// encoder, or this encoder folder and variant.
func SameEncoder(m bundle.Manifest, src *EncoderSource) error {
	switch {
	case src == nil && m.Encoder != nil:
		return fmt.Errorf("it is a %s model, but no --encoder is set", m.Graph.Kind)
	case src == nil:
		return nil
	case m.Encoder == nil:
		return fmt.Errorf("it is a %s model, but --encoder %s is set", m.Graph.Kind, src.Dir)
	case m.Encoder.Variant != src.Variant:
		return fmt.Errorf("it was trained with the %s encoder, but --encoder-variant is %s", m.Encoder.Variant, src.Variant)
	case filepath.Clean(m.Encoder.Source) != filepath.Clean(src.Dir):
		return fmt.Errorf("it was trained with the encoder in %s, but --encoder is %s", m.Encoder.Source, src.Dir)
	}
	return nil
}
