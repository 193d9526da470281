//go:build !linux

package main

import "os"

// noEcho is not implemented here: PINs typed at a terminal are echoed; use -pin or HUFU_PIN
// with care, or pipe the PIN in.
func noEcho(*os.File) (func(), bool) { return nil, false }
