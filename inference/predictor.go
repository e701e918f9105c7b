package inference

import "context"

// Predictor classifies texts; *Model is one, and so is a route to the
// serving set's current version of a model.
type Predictor interface {
	Ref() ModelRef
	Predict(ctx context.Context, texts []string) ([]Prediction, error)
}

// Swappable is a Predictor whose version can change between calls (hot
// swap). Pin returns the version serving now, held until release is
// called, so a unit of work (a Kafka transaction) never mixes versions.
type Swappable interface {
	Predictor
	Pin() (p Predictor, release func(), err error)
}
