package tracking

import (
	"context"
	"fmt"

	"github.com/triage-ml/triage/registry"
)

// Open is the tracker the flags name: MLflow at mlflowURI (also the
// registry Mirror), else the local run log in runsDir, which needs no
// mirror (the Triage registry is the model registry).
func Open(mlflowURI, runsDir string, opts MLflowOptions) (Tracker, Mirror, error) {
	if mlflowURI == "" {
		return NewLocal(runsDir, opts.Logger), nil, nil
	}
	c, err := NewMLflow(mlflowURI, opts)
	if err != nil {
		return nil, nil, err
	}
	return c, c, nil
}

// MirrorMove repeats a recorded registry alias move in m: a set, promote or
// rollback points the alias at mv.To; a remove deletes it. The version must
// have been mirrored (RegisterVersion) for a set to succeed.
func MirrorMove(ctx context.Context, m Mirror, mv registry.Move) error {
	switch {
	case mv.Kind == "":
		return nil // nothing moved
	case mv.Kind == registry.KindRemove || mv.To == "":
		return m.RemoveAlias(ctx, mv.Model, mv.Alias)
	case mv.Kind == registry.KindSet || mv.Kind == registry.KindPromote || mv.Kind == registry.KindRollback:
		return m.SetAlias(ctx, mv.Model, mv.Alias, mv.To)
	}
	return fmt.Errorf("mirror move of %s %s: unknown kind %q: %w", mv.Model, mv.Alias, mv.Kind, ErrInvalid)
}
