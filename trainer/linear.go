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
		w := v.Weights[j]
		row := m.W[int(f)*C : int(f)*C+C]
		for c := range z {
			z[c] += w * row[c]
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

// lossGradient replaces scores z with dLoss/dz for gold class y; it returns
// false when the gradient is zero (nothing to learn from the example).
func lossGradient(loss string, z []float32, y int) bool {
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
// in a seeded shuffled order, so a run is reproducible.
func fit(ctx context.Context, xs []featurizer.Vector, ys []int, numFeatures, numClasses int,
	hp HyperParams, maxEpochs int, seed uint64, hook epochHook) (*Linear, error) {
	m := newLinear(numFeatures, numClasses)
	C := numClasses
	gW := make([]float32, numFeatures*C) // AdaGrad squared-gradient sums
	gB := make([]float32, C)
	z := make([]float32, C)
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c696e6561720001))
	lr, l2 := float32(hp.LearningRate), float32(hp.L2)
	const eps = 1e-8
	for epoch := 1; epoch <= maxEpochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for n, i := range order {
			if n%1024 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			x := xs[i]
			m.Scores(x, z)
			if !lossGradient(hp.Loss, z, ys[i]) {
				continue
			}
			for c, g := range z {
				gB[c] += g * g
				m.B[c] -= lr * g / float32(math.Sqrt(float64(gB[c])+eps))
			}
			for j, f := range x.IDs {
				w := x.Weights[j]
				off := int(f) * C
				row, acc := m.W[off:off+C], gW[off:off+C]
				acc, zz := acc[:len(row)], z[:len(row)] // lets the compiler drop bounds checks
				for c := range row {
					g := w*zz[c] + l2*row[c]
					a := acc[c] + g*g
					acc[c] = a
					row[c] -= lr * g / float32(math.Sqrt(float64(a)+eps))
				}
			}
		}
		if hook != nil && !hook(epoch, m) {
			break
		}
	}
	return m, nil
}

// Fit trains a linear model on featurised examples for exactly epochs
// passes (no early stopping): the in-memory entry point for callers that
// run their own loop, such as the active-learning simulation.
func Fit(ctx context.Context, xs []featurizer.Vector, ys []int, numFeatures, numClasses int, hp HyperParams, epochs int, seed uint64) (*Linear, error) {
	return fit(ctx, xs, ys, numFeatures, numClasses, hp, epochs, seed, nil)
}
