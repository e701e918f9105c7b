//go:build !amd64 || purego

package trainer

const (
	useAVX       = false
	havePrefetch = false
)

func axpyAVX(y, x *float32, w float32, n int) { panic("unreachable") }

func adagradAVX(row, acc, d *float32, w, l2, lr, eps float32, n int) { panic("unreachable") }

func prefetchLines(p *float32, n int) { panic("unreachable") }
