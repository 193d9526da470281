package cosign

import (
	"math/big"
	"sync"

	"filippo.io/bigmod"
)

// scratch holds the temporaries of the server steps, the hot path of the appliance, so that
// they allocate nothing beyond what gmsm's big.Int API does inside. Secrets in it are wiped
// before it goes back to the pool.
type scratch struct {
	k2, k3, x1    [ScalarSize]byte
	d, r, s3, t   *bigmod.Nat
	px, py        big.Int
	coordinateBuf [2][ScalarSize / (bitsPerWord / 8)]big.Word
}

const bitsPerWord = 32 << (^big.Word(0) >> 63)

var scratchPool = sync.Pool{New: func() any {
	w := &scratch{d: bigmod.NewNat(), r: bigmod.NewNat(), s3: bigmod.NewNat(), t: bigmod.NewNat()}
	// Give the coordinates fixed backing storage so SetBytes never reallocates.
	w.px.SetBits(w.coordinateBuf[0][:0])
	w.py.SetBits(w.coordinateBuf[1][:0])
	return w
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(w *scratch) {
	clear(w.k2[:])
	clear(w.k3[:])
	clear(w.x1[:])
	for _, x := range []*bigmod.Nat{w.d, w.r, w.s3, w.t} {
		clear(x.Bits())
	}
	scratchPool.Put(w)
}

// affine sets the scratch coordinates to p's, without allocating.
func (w *scratch) affine(p *Point) (x, y *big.Int) {
	w.px.SetBytes(p[1 : 1+ScalarSize])
	w.py.SetBytes(p[1+ScalarSize:])
	return &w.px, &w.py
}
