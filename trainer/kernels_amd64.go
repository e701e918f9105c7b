//go:build amd64 && !purego

package trainer

// useAVX: the vector kernels need AVX and an OS that saves YMM registers.
var useAVX = cpuHasAVX()

// havePrefetch: PREFETCHT0 is part of every amd64 CPU.
const havePrefetch = true

func cpuHasAVX() bool

//go:noescape
func axpyAVX(y, x *float32, w float32, n int)

//go:noescape
func adagradAVX(row, acc, d *float32, w, l2, lr, eps float32, n int)

//go:noescape
func prefetchLines(p *float32, n int)
