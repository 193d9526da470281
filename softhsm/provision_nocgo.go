//go:build !cgo

package softhsm

import "fmt"

// Provision needs cgo; see the cgo build of this package for its documentation.
func Provision(opts Options) (*Token, error) {
	return nil, fmt.Errorf("softhsm: provision token %q: %w", opts.Label, ErrNoCgo)
}
