package main

import (
	"bytes"
	"testing"

	"github.com/hufu-hsm/hufu/buildinfo"
)

// TestVersion: hufud version prints the build (package buildinfo) and reads no
// configuration.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"version"}, &out, &errOut); err != nil {
		t.Fatalf("hufud version: %v\n%s", err, errOut.String())
	}
	if want := "hufud " + buildinfo.Read().String() + "\n"; out.String() != want {
		t.Fatalf("hufud version printed %q, want %q", out.String(), want)
	}
}
