package trainer

import "math"

// adagradEps keeps AdaGrad's first steps finite for coordinates whose
// squared-gradient sum is still zero.
const adagradEps = float32(1e-8)

// axpy adds w*x to y element-wise (len(x) >= len(y)); the hot loop of
// scoring. The vector path and the scalar one round identically.
func axpy(y []float32, w float32, x []float32) {
	if useVec(len(y)) {
		axpyVec(y, w, x)
		return
	}
	axpyGo(y, w, x)
}

// useVec says whether rows of n floats go to the vector kernels: for
// shorter ones a call and masks cost more than they save.
func useVec(n int) bool { return useAVX && n >= 8 }

// axpyVec is axpy's vector path; hot loops call it, or the inlinable
// axpyGo, directly.
func axpyVec(y []float32, w float32, x []float32) {
	x = x[:len(y)]
	axpyAVX(&y[0], &x[0], w, len(y))
}

func axpyGo(y []float32, w float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += float32(w * x[i]) // float32(): no fused multiply-add, so both paths agree bit for bit
	}
}

// adagradRow does one AdaGrad step on one weight row for an example whose
// loss gradient w.r.t. the class scores is d and whose feature value is w:
// g = w*d + l2*row; acc += g²; row -= lr*g/sqrt(acc+eps). The L2 term is
// part of the gradient, so it only decays rows an example touches.
func adagradRow(row, acc, d []float32, w, l2, lr float32) {
	if useVec(len(row)) {
		adagradRowVec(row, acc, d, w, l2, lr)
		return
	}
	adagradRowGo(row, acc, d, w, l2, lr)
}

// adagradRowVec is adagradRow's vector path.
func adagradRowVec(row, acc, d []float32, w, l2, lr float32) {
	acc, d = acc[:len(row)], d[:len(row)]
	adagradAVX(&row[0], &acc[0], &d[0], w, l2, lr, adagradEps, len(row))
}

func adagradRowGo(row, acc, d []float32, w, l2, lr float32) {
	acc, d = acc[:len(row)], d[:len(row)]
	for c := range row {
		g := float32(w*d[c]) + float32(l2*row[c])
		a := acc[c] + float32(g*g)
		acc[c] = a
		// A float64 square root rounded to float32 is the correctly rounded
		// float32 one, as the vector instruction computes.
		row[c] -= float32(lr*g) / float32(math.Sqrt(float64(a+adagradEps)))
	}
}

// prefetchRow warms the cache lines of row (a no-op where there is no
// assembly); row must be non-empty.
func prefetchRow(row []float32) {
	if havePrefetch {
		prefetchLines(&row[0], len(row))
	}
}
