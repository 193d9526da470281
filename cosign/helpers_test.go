package cosign

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/emmansun/gmsm/sm3"
)

// detRand is a deterministic byte stream, SM3(seed ‖ counter) blocks, for known-answer tests
// and reproducible property tests. Never use outside tests.
type detRand struct {
	seed    []byte
	counter uint64
	buf     []byte
}

func newDetRand(seed string) *detRand { return &detRand{seed: []byte(seed)} }

func (r *detRand) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(r.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], r.counter)
			r.counter++
			block := sm3.Sum(append(append([]byte(nil), r.seed...), c[:]...))
			r.buf = block[:]
		}
		k := copy(p, r.buf)
		p, r.buf = p[k:], r.buf[k:]
	}
	return n, nil
}

// failingRand injects a randomness failure, which a real source cannot be made to produce.
type failingRand struct{}

func (failingRand) Read([]byte) (int, error) { return 0, errors.New("entropy source unavailable") }

// constRand returns the same byte forever: all-zero or all-0xff draws are out of range, so a
// scalar draw from it must fail rather than loop.
type constRand byte

func (c constRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

var _ io.Reader = (*detRand)(nil)

// newPair generates a split key in process with a deterministic source.
func newPair(t testing.TB, seed string) (*Key, *LocalServer) {
	t.Helper()
	key, server, err := NewLocalPair(newDetRand(seed), []byte("test-key/"+seed))
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	return key, server
}

func mustMarshal(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
