package trainer

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/triage-ml/triage/featurizer"
)

func randVec(rng *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (rng.Float32()*2 - 1) * scale
	}
	return v
}

// The vector kernels must round exactly as the scalar ones, for every
// length (full blocks and masked tails), so a model does not depend on
// the CPU it was trained on.
func TestKernelsMatchScalar(t *testing.T) {
	if !useAVX {
		t.Skip("no vector kernels on this CPU/build")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 80; n++ {
		y, x := randVec(rng, n, 3), randVec(rng, n, 3)
		w := rng.Float32()
		got, want := slices.Clone(y), slices.Clone(y)
		axpy(got, w, x)
		axpyGo(want, w, x)
		if !slices.Equal(got, want) {
			t.Fatalf("axpy n=%d: got %v, want %v", n, got, want)
		}

		row, d := randVec(rng, n, 1), randVec(rng, n, 1)
		acc := randVec(rng, n, 1)
		for i := range acc {
			acc[i] = acc[i] * acc[i] // sums of squares are non-negative
		}
		acc[0] = 0 // a first step
		for _, l2 := range []float32{0, 1e-5} {
			gotRow, gotAcc := slices.Clone(row), slices.Clone(acc)
			wantRow, wantAcc := slices.Clone(row), slices.Clone(acc)
			adagradRow(gotRow, gotAcc, d, w, l2, 0.1)
			adagradRowGo(wantRow, wantAcc, d, w, l2, 0.1)
			if !slices.Equal(gotRow, wantRow) || !slices.Equal(gotAcc, wantAcc) {
				t.Fatalf("adagradRow n=%d l2=%v: row %v acc %v, want %v %v", n, l2, gotRow, gotAcc, wantRow, wantAcc)
			}
		}
	}
	// Lanes past n stay untouched: the tail is masked, not overrun.
	buf := randVec(rng, 16, 1)
	before := slices.Clone(buf)
	axpy(buf[:13], 2, randVec(rng, 13, 1))
	adagradRow(buf[:13], make([]float32, 16)[:13], randVec(rng, 13, 1), 1, 1e-5, 0.1)
	if !slices.Equal(buf[13:], before[13:]) {
		t.Fatalf("kernels wrote past n: %v, want %v", buf[13:], before[13:])
	}
}

// referenceFit is the update rule written plainly in float64 (softmax loss,
// AdaGrad, L2 in the gradient of touched rows), to check fit's fast path.
func referenceFit(xs []featurizer.Vector, ys []int, F, C int, hp HyperParams, epochs int, seed uint64) []float64 {
	W, gW := make([]float64, F*C), make([]float64, F*C)
	B, gB := make([]float64, C), make([]float64, C)
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c696e6561720001))
	for range epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			x := xs[i]
			z := slices.Clone(B)
			for j, f := range x.IDs {
				for c := range C {
					z[c] += float64(x.Weights[j]) * W[int(f)*C+c]
				}
			}
			mx, sum := slices.Max(z), 0.0
			for c := range z {
				z[c] = math.Exp(z[c] - mx)
				sum += z[c]
			}
			for c := range z {
				z[c] /= sum
			}
			z[ys[i]]--
			for c := range C {
				gB[c] += z[c] * z[c]
				B[c] -= hp.LearningRate * z[c] / math.Sqrt(gB[c]+1e-8)
			}
			for j, f := range x.IDs {
				for c := range C {
					k := int(f)*C + c
					g := float64(x.Weights[j])*z[c] + hp.L2*W[k]
					gW[k] += g * g
					W[k] -= hp.LearningRate * g / math.Sqrt(gW[k]+1e-8)
				}
			}
		}
	}
	return W
}

func TestFitMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const F, N = 40, 60
	// 3 classes take the scalar path; 11 the vector one with padded rows.
	for _, C := range []int{3, 11} {
		testFitMatchesReference(t, rng, F, C, N)
	}
}

func testFitMatchesReference(t *testing.T, rng *rand.Rand, F, C, N int) {
	xs, ys := make([]featurizer.Vector, N), make([]int, N)
	for i := range xs {
		ids := rng.Perm(F - 1)[:1+rng.IntN(8)]
		slices.Sort(ids)
		for _, id := range ids {
			xs[i].IDs = append(xs[i].IDs, int64(id+1))
			xs[i].Weights = append(xs[i].Weights, 0.2+rng.Float32())
		}
		ys[i] = rng.IntN(C)
	}
	for _, l2 := range []float64{0, 1e-3} {
		hp := HyperParams{Loss: LossLogistic, LearningRate: 0.1, L2: l2}
		m, err := fit(context.Background(), xs, ys, nil, F, C, hp, 3, 7, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := referenceFit(xs, ys, F, C, hp, 3, 7)
		for k, w := range want {
			if d := math.Abs(float64(m.W[k]) - w); d > 1e-4*max(1, math.Abs(w)) {
				t.Fatalf("C=%d l2=%v: W[%d] = %v, reference %v (diff %g)", C, l2, k, m.W[k], w, d)
			}
		}
		again, _ := fit(context.Background(), xs, ys, nil, F, C, hp, 3, 7, nil)
		if !slices.Equal(m.W, again.W) || !slices.Equal(m.B, again.B) {
			t.Fatalf("C=%d l2=%v: same seed gave a different model", C, l2)
		}
	}
}
