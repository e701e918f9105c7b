package trainer

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/triage-ml/triage/featurizer"
)

// Linear is a multinomial linear model over sparse features: row f of W
// holds feature f's contribution to each class score; row 0 is padding.
type Linear struct {
	NumFeatures, NumClasses int
	W                       []float32 // [NumFeatures][NumClasses]
	B                       []float32 // [NumClasses]
}

func newLinear(features, classes int) *Linear {
	return &Linear{NumFeatures: features, NumClasses: classes,
		W: make([]float32, features*classes), B: make([]float32, classes)}
}

func (m *Linear) clone() *Linear {
	c := *m
	c.W = append([]float32(nil), m.W...)
	c.B = append([]float32(nil), m.B...)
	return &c
}

// Scores writes the class scores of v into z (len NumClasses).
func (m *Linear) Scores(v featurizer.Vector, z []float32) {
	C := m.NumClasses
	copy(z, m.B)
	for j, f := range v.IDs {
		axpy(z, v.Weights[j], m.W[int(f)*C:int(f)*C+C])
	}
}

// prefetchAhead is how many features ahead trainScores fetches rows:
// enough to cover memory latency, few enough to stay in flight.
const prefetchAhead = 6

// trainScores writes v's class scores into z from weights W whose rows are
// stride S apart. It also fetches the weight and AdaGrad rows of the
// features ahead (their order is random, so the hardware cannot guess
// them), which the update then finds in cache.
func trainScores(W, B, acc []float32, S int, v featurizer.Vector, z []float32, vec bool) {
	copy(z, B)
	for _, f := range v.IDs[:min(prefetchAhead, len(v.IDs))] {
		prefetchRow(W[int(f)*S : int(f)*S+S])
		prefetchRow(acc[int(f)*S : int(f)*S+S])
	}
	for j, f := range v.IDs {
		if k := j + prefetchAhead; k < len(v.IDs) {
			off := int(v.IDs[k]) * S
			prefetchRow(W[off : off+S])
			prefetchRow(acc[off : off+S])
		}
		if row := W[int(f)*S : int(f)*S+S]; vec {
			axpyVec(z, v.Weights[j], row)
		} else {
			axpyGo(z, v.Weights[j], row)
		}
	}
}

// Predict returns the arg-max class of v; z is scratch of len NumClasses.
func (m *Linear) Predict(v featurizer.Vector, z []float32) int {
	m.Scores(v, z)
	best := 0
	for c := range z {
		if z[c] > z[best] {
			best = c
		}
	}
	return best
}

// softmaxInPlace turns scores into probabilities, stable for large scores.
func softmaxInPlace(z []float32) {
	mx := z[0]
	for _, v := range z {
		mx = max(mx, v)
	}
	var sum float64
	for c, v := range z {
		e := math.Exp(float64(v - mx))
		z[c] = float32(e)
		sum += e
	}
	inv := float32(1 / sum)
	for c := range z {
		z[c] *= inv
	}
}

// Losses the trainer can minimise.
const (
	LossLogistic = "logistic" // softmax cross-entropy: calibrated probabilities
	LossHinge    = "hinge"    // Crammer-Singer multi-class linear SVM
)

// lossGradient replaces scores z with dLoss/dz for gold class y, or for the
// target distribution soft when it is not nil (distillation; logistic loss
// only); it returns false when the gradient is zero (nothing to learn from
// the example).
func lossGradient(loss string, z []float32, y int, soft []float32) bool {
	if loss == LossHinge {
		r := -1
		for c := range z {
			if c != y && (r < 0 || z[c] > z[r]) {
				r = c
			}
		}
		violated := r >= 0 && 1+z[r]-z[y] > 0
		clear(z)
		if !violated {
			return false
		}
		z[r], z[y] = 1, -1
		return true
	}
	softmaxInPlace(z)
	if soft != nil {
		for c, q := range soft {
			z[c] -= q
		}
		return true
	}
	z[y] -= 1
	return true
}

// HyperParams are one point of the search; Epochs is filled in with the
// epoch that scored best on validation.
type HyperParams struct {
	Loss         string  `json:"loss"`
	LearningRate float64 `json:"learning_rate"`
	L2           float64 `json:"l2"`
	Epochs       int     `json:"epochs"`
}

// epochHook is called after each epoch with the current model; returning
// false stops training.
type epochHook func(epoch int, m *Linear) (keepGoing bool)

// fit minimises the loss with AdaGrad (per-coordinate step sizes, which
// suit sparse TF-IDF input where rare features need larger steps) plus L2
// decay applied lazily to the rows an example touches. Examples are visited
// in a seeded shuffled order, so a run is reproducible. soft, when not nil,
// holds each example's target distribution ([len(xs)][numClasses]) in
// place of its gold label ys (distillation).
func fit(ctx context.Context, xs []featurizer.Vector, ys []int, soft []float32, numFeatures, numClasses int,
	hp HyperParams, maxEpochs int, seed uint64, hook epochHook) (*Linear, error) {
	m := newLinear(numFeatures, numClasses)
	C := numClasses
	// With the vector kernels, rows are padded to whole 8-lane vectors
	// (zero lanes stay zero: their gradient is zero) so no step needs a
	// masked tail; m gets the unpadded rows when a caller looks.
	S := C
	if useAVX && C >= 8 {
		S = (C + 7) &^ 7
	}
	W, B := m.W, m.B
	if S != C {
		W, B = make([]float32, numFeatures*S), make([]float32, S)
	}
	gW := make([]float32, numFeatures*S) // AdaGrad squared-gradient sums
	gB := make([]float32, S)
	z := make([]float32, S)
	vec := useVec(S)
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c696e6561720001))
	lr, l2 := float32(hp.LearningRate), float32(hp.L2)
	for epoch := 1; epoch <= maxEpochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for n, i := range order {
			if n%1024 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			x := xs[i]
			trainScores(W, B, gW, S, x, z, vec)
			var target []float32
			if soft != nil {
				target = soft[i*C : (i+1)*C]
			}
			if !lossGradient(hp.Loss, z[:C], ys[i], target) {
				continue
			}
			// z now holds dLoss/dscores (zero in padding lanes), shared by
			// the bias and every feature row the example touches.
			adagradRow(B, gB, z, 1, 0, lr)
			for j, f := range x.IDs {
				off := int(f) * S
				if vec {
					adagradRowVec(W[off:off+S], gW[off:off+S], z, x.Weights[j], l2, lr)
				} else {
					adagradRowGo(W[off:off+S], gW[off:off+S], z, x.Weights[j], l2, lr)
				}
			}
		}
		if hook != nil {
			unpad(m, W, B, S)
			if !hook(epoch, m) {
				return m, nil
			}
		}
	}
	unpad(m, W, B, S)
	return m, nil
}

// unpad copies padded training weights (row stride S) into m.
func unpad(m *Linear, W, B []float32, S int) {
	C := m.NumClasses
	if S == C {
		return // m's own slices were trained in place
	}
	for f := range m.NumFeatures {
		copy(m.W[f*C:f*C+C], W[f*S:f*S+C])
	}
	copy(m.B, B[:C])
}

// Fit trains a linear model on featurised examples for exactly epochs
// passes (no early stopping): the in-memory entry point for callers that
// run their own loop, such as the active-learning simulation.
func Fit(ctx context.Context, xs []featurizer.Vector, ys []int, numFeatures, numClasses int, hp HyperParams, epochs int, seed uint64) (*Linear, error) {
	return fit(ctx, xs, ys, nil, numFeatures, numClasses, hp, epochs, seed, nil)
}
