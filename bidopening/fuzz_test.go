package bidopening

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The seed corpora in testdata/fuzz/<Target>/ (written by -update) hold valid statements and
// reports made by this package with real SM2 keys and certificates, and a few broken ones;
// `go test` runs them as regression tests. The FuzzVerify seeds that are whole reports are
// signed with reportKey, which is fixed, so they verify in every run.

var update = flag.Bool("update", false, "rewrite the seed corpora in testdata/fuzz")

// FuzzParseStatement: never panics, fails only with *StatementError, and whatever it accepts
// is canonical: Marshal gives back the same text.
func FuzzParseStatement(f *testing.F) {
	f.Add(katText)
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseStatement(text)
		if err != nil {
			var se *StatementError
			if s != nil || !errors.As(err, &se) {
				t.Fatalf("ParseStatement = %v, %v", s, err)
			}
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("accepted a statement Marshal rejects: %v", err)
		}
		if again != text {
			t.Fatalf("accepted a non-canonical statement:\n%q\nMarshal gives\n%q", text, again)
		}
	})
}

// FuzzVerify runs Verify on the input as a file, and again on the input as a body signed
// with the right key, so that the fuzzer reaches the checks behind the signature. Verify
// must never panic and fails only with *VerifyError; whatever it accepts is exactly what
// Sign writes for the report it returns, and Sign accepts that report.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"type":"opening"}` + "\n"))
	pub := reportKey.PublicKey()
	f.Fuzz(func(t *testing.T, in []byte) {
		check := func(b []byte) {
			r, err := Verify(b, pub)
			if err != nil {
				var ve *VerifyError
				if r != nil || !errors.As(err, &ve) {
					t.Fatalf("Verify = %v, %v", r, err)
				}
				return
			}
			body, err := r.marshalBody()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, body) || bytes.Count(b[len(body):], []byte("\n")) != 1 {
				t.Fatalf("accepted a report that is not what the writer produces:\n%s\nwriter:\n%s", b, body)
			}
			if _, err := r.Sign(context.Background(), reportKey); err != nil {
				t.Fatalf("Verify accepted a report that Sign refuses: %v", err)
			}
		}
		check(in)
		if len(in) < MaxReportSize/2 {
			check(signBody(t, in, reportKey))
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpora when -update is given.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	fx := getFixture(t)
	r := fx.report(t)
	minimal := fx.report(t)
	minimal.Envelopes, minimal.Consents, minimal.Releases, minimal.Attempts = nil, nil, nil, nil
	minimal.Opening.ManifestSHA256 = ManifestSHA256(nil)

	full := mustSign(t, r, reportKey)
	lines := splitLines(full)
	body := joinLines(lines[:len(lines)-1])
	noConsent := fx.report(t)
	noConsent.Releases = append(noConsent.Releases, Release{Envelope: "env-c1", At: at(9, 6, 0, 0), Outcome: OutcomeOK, Via: ViaRelease})
	badBody, err := noConsent.marshalBody()
	if err != nil {
		t.Fatal(err)
	}
	writeSeeds(t, "FuzzVerify", "[]byte",
		seed{"valid-report", string(full)},
		seed{"valid-body", string(body)},
		seed{"valid-minimal-report", string(mustSign(t, minimal, reportKey))},
		seed{"release-without-consent-body", string(badBody)},
		seed{"truncated", string(full[:len(full)/2])},
	)

	var statements []seed
	statements = append(statements, seed{"valid-kat", katText})
	for i, c := range r.Consents {
		statements = append(statements, seed{fmt.Sprintf("valid-%d", i), c.Statement})
	}
	statements = append(statements,
		seed{"trailing-newline", katText + "\n"},
		seed{"unsorted", strings.Replace(katText, "env-a2", "env-a0", 1)},
		seed{"project-with-bidi-override", strings.Replace(katText, "project=ZB-2026-0815", "project=ZB-\u202e5180-6202", 1)},
	)
	writeSeeds(t, "FuzzParseStatement", "string", statements...)
}

type seed struct{ name, value string }

// writeSeeds writes one corpus file per seed in the `go test fuzz v1` format.
func writeSeeds(t *testing.T, target, typ string, seeds ...seed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n%s(%q)\n", typ, s.value)
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeedsAreValid checks that the committed corpora hold the valid inputs they are named
// for, so that a change of format cannot leave the fuzzers with only broken seeds.
func TestSeedsAreValid(t *testing.T) {
	read := func(target, name, typ string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(string(b), "go test fuzz v1\n"+typ+"(")
		if !ok || !strings.HasSuffix(lit, ")\n") {
			t.Fatalf("%s/%s is not a one-value corpus file of %s", target, name, typ)
		}
		v, err := strconv.Unquote(strings.TrimSuffix(lit, ")\n"))
		if err != nil {
			t.Fatalf("%s/%s: %v", target, name, err)
		}
		return v
	}
	for _, name := range []string{"valid-report", "valid-minimal-report"} {
		if _, err := Verify([]byte(read("FuzzVerify", name, "[]byte")), reportKey.PublicKey()); err != nil {
			t.Errorf("FuzzVerify/%s: %v", name, err)
		}
	}
	if _, err := Verify(signBody(t, []byte(read("FuzzVerify", "valid-body", "[]byte")), reportKey), reportKey.PublicKey()); err != nil {
		t.Errorf("FuzzVerify/valid-body: %v", err)
	}
	for _, name := range []string{"valid-kat", "valid-0", "valid-1"} {
		if _, err := ParseStatement(read("FuzzParseStatement", name, "string")); err != nil {
			t.Errorf("FuzzParseStatement/%s: %v", name, err)
		}
	}
}
