package serving

import (
	"context"

	"github.com/triage-ml/triage/inference"
)

// Route is a model name resolved against the set on every use: the
// consumer's route to whatever version serves that name now.
type Route struct {
	set  *Set
	name string
}

var _ inference.Swappable = Route{}

// Route returns the route for name.
func (s *Set) Route(name string) Route { return Route{set: s, name: name} }

// Ref names the version serving now (version "" when none is loaded).
func (r Route) Ref() inference.ModelRef {
	return inference.ModelRef{Name: r.name, Version: r.set.Version(r.name)}
}

// Pin holds the version serving now until release.
func (r Route) Pin() (inference.Predictor, func(), error) {
	l, err := r.set.Acquire(r.name)
	if err != nil {
		return nil, nil, err
	}
	return l.Model, l.Release, nil
}

// Predict classifies with the version serving now, for callers that need
// no pinning across calls.
func (r Route) Predict(ctx context.Context, texts []string) ([]inference.Prediction, error) {
	p, release, err := r.Pin()
	if err != nil {
		return nil, err
	}
	defer release()
	return p.Predict(ctx, texts)
}
