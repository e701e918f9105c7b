package inference

import "github.com/triage-ml/triage/featurizer"

// Input is one text prepared for a model, by Model.Transform: its n-gram
// features and/or its WordPiece tokens, by the bundle's kind. Preparing it
// is pure CPU work that callers do in their own goroutine (the gateway's
// request goroutine), so only the ONNX Runtime call is shared.
type Input struct {
	// Features are the n-gram features; empty for encoder-only models.
	Features featurizer.Vector
	// Tokens are the WordPiece ids ([CLS] … [SEP], unpadded) for models
	// with a sentence encoder; nil otherwise.
	Tokens []int64
	// Truncated: the text exceeded the featuriser's window or the
	// encoder's max length and only its beginning is classified.
	Truncated bool
	// Length and OOVRate are the drift monitor's input signals (Signals).
	Length  int
	OOVRate float32
}
