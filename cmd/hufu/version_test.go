package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/buildinfo"
)

// TestVersion: hufu version prints the build (package buildinfo) without a daemon.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"-addr", "127.0.0.1:1", "version"}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("hufu version: %v\n%s", err, errOut.String())
	}
	if want := "hufu " + buildinfo.Read().String() + "\n"; out.String() != want {
		t.Fatalf("hufu version printed %q, want %q", out.String(), want)
	}
}
