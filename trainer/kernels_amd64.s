//go:build amd64 && !purego

#include "textflag.h"

// func cpuHasAVX() bool
TEXT ·cpuHasAVX(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	ANDL $0x18000000, CX // OSXSAVE (27) and AVX (28)
	CMPL CX, $0x18000000
	JNE  no
	XORL CX, CX
	XGETBV               // XCR0: the OS saves XMM (bit 1) and YMM (bit 2) state
	ANDL $6, AX
	CMPL AX, $6
	JNE  no
	MOVB $1, ret+0(FP)
	RET

no:
	MOVB $0, ret+0(FP)
	RET

// tailMask: loading 8 lanes at tailMask+4*(8-r) sets the first r lanes.
DATA tailMask<>+0(SB)/8, $0xffffffffffffffff
DATA tailMask<>+8(SB)/8, $0xffffffffffffffff
DATA tailMask<>+16(SB)/8, $0xffffffffffffffff
DATA tailMask<>+24(SB)/8, $0xffffffffffffffff
DATA tailMask<>+32(SB)/8, $0
DATA tailMask<>+40(SB)/8, $0
DATA tailMask<>+48(SB)/8, $0
DATA tailMask<>+56(SB)/8, $0
GLOBL tailMask<>(SB), RODATA|NOPTR, $64

// func axpyAVX(y, x *float32, w float32, n int)
// y[i] += w*x[i] for i < n; multiply then add, no FMA. The last n%8
// elements go through masked loads and stores.
TEXT ·axpyAVX(SB), NOSPLIT, $0-32
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS w+16(FP), Y0
	MOVQ         n+24(FP), CX
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX

axpyloop:
	CMPQ    AX, BX
	JGE     axpytail
	VMULPS  (SI)(AX*4), Y0, Y1
	VADDPS  (DI)(AX*4), Y1, Y1
	VMOVUPS Y1, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     axpyloop

axpytail:
	SUBQ       AX, CX                  // r = n%8
	JZ         axpydone
	LEAQ       tailMask<>(SB), R8
	NEGQ       CX
	VMOVDQU    32(R8)(CX*4), Y7        // first r lanes set
	LEAQ       (SI)(AX*4), SI
	LEAQ       (DI)(AX*4), DI
	VMASKMOVPS (SI), Y7, Y1
	VMULPS     Y1, Y0, Y1
	VMASKMOVPS (DI), Y7, Y2
	VADDPS     Y2, Y1, Y1
	VMASKMOVPS Y1, Y7, (DI)

axpydone:
	VZEROUPPER
	RET

// func adagradAVX(row, acc, d *float32, w, l2, lr, eps float32, n int)
// For i < n: g = w*d + l2*row; acc += g*g; row -= (lr*g) / sqrt(acc+eps),
// rounding as adagradRowGo does. Masked lanes of the tail compute on
// zeros (0/sqrt(eps)), which is finite, and are not stored.
TEXT ·adagradAVX(SB), NOSPLIT, $0-48
	MOVQ         row+0(FP), DI
	MOVQ         acc+8(FP), SI
	MOVQ         d+16(FP), DX
	VBROADCASTSS w+24(FP), Y0
	VBROADCASTSS l2+28(FP), Y1
	VBROADCASTSS lr+32(FP), Y2
	VBROADCASTSS eps+36(FP), Y3
	MOVQ         n+40(FP), CX
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX
	LEAQ         tailMask<>(SB), R8

adaloop:
	CMPQ    AX, BX
	JGE     adatail
	VMOVUPS (DI)(AX*4), Y4        // row
	VMULPS  (DX)(AX*4), Y0, Y5    // w*d
	VMULPS  Y4, Y1, Y6            // l2*row
	VADDPS  Y6, Y5, Y5            // g
	VMULPS  Y5, Y5, Y6            // g*g
	VADDPS  (SI)(AX*4), Y6, Y6    // a = acc + g*g
	VMOVUPS Y6, (SI)(AX*4)
	VADDPS  Y3, Y6, Y6            // a + eps
	VSQRTPS Y6, Y6
	VMULPS  Y5, Y2, Y5            // lr*g
	VDIVPS  Y6, Y5, Y5            // lr*g / sqrt(a+eps)
	VSUBPS  Y5, Y4, Y4            // row - step
	VMOVUPS Y4, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     adaloop

adatail:
	SUBQ       AX, CX                // r = n%8
	JZ         adadone
	NEGQ       CX
	VMOVDQU    32(R8)(CX*4), Y7      // first r lanes set
	LEAQ       (DI)(AX*4), DI
	LEAQ       (SI)(AX*4), SI
	LEAQ       (DX)(AX*4), DX
	VMASKMOVPS (DI), Y7, Y4          // row
	VMASKMOVPS (DX), Y7, Y5          // d
	VMULPS     Y5, Y0, Y5            // w*d
	VMULPS     Y4, Y1, Y6            // l2*row
	VADDPS     Y6, Y5, Y5            // g
	VMULPS     Y5, Y5, Y6            // g*g
	VMASKMOVPS (SI), Y7, Y8          // acc
	VADDPS     Y8, Y6, Y6            // a
	VMASKMOVPS Y6, Y7, (SI)
	VADDPS     Y3, Y6, Y6
	VSQRTPS    Y6, Y6
	VMULPS     Y5, Y2, Y5
	VDIVPS     Y6, Y5, Y5
	VSUBPS     Y5, Y4, Y4
	VMASKMOVPS Y4, Y7, (DI)

adadone:
	VZEROUPPER
	RET

// func prefetchLines(p *float32, n int)
// Asks for the cache lines of p[0:n] ahead of use: training reads weight
// rows in random order, so the hardware prefetcher cannot guess them.
TEXT ·prefetchLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	LEAQ (SI)(CX*4), CX

pfloop:
	PREFETCHT0 (SI)
	ADDQ       $64, SI
	CMPQ       SI, CX
	JLT        pfloop
	RET
