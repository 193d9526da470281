package store

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// fuzzKey is a fixed checkpoint key so that the committed seed exports verify.
func fuzzKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	d := sha256.Sum256([]byte("hufu store fuzz checkpoint key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeSeed writes one corpus file in the format of `go test -fuzz`.
func writeSeed(t *testing.T, target, name string, b []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFuzzSeeds regenerates the committed seed corpora under -update; otherwise it only
// checks that they exist.
func TestFuzzSeeds(t *testing.T) {
	if !*update {
		for _, target := range []string{"FuzzVerifyExport", "FuzzDecodeEnvelope", "FuzzDecodeCanonicalRecord", "FuzzDecodeStoredAudit", "FuzzListCursor"} {
			if m, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*")); len(m) == 0 {
				t.Errorf("no committed seed corpus for %s (run with -update)", target)
			}
		}
		// The valid seed must really be valid, or the fuzzer never reaches the deep paths.
		raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerifyExport", "valid-export"))
		if err != nil {
			t.Fatal(err)
		}
		body := strings.TrimSuffix(strings.TrimPrefix(string(raw), "go test fuzz v1\n[]byte("), ")\n")
		exp, err := strconv.Unquote(body)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := VerifyExport(strings.NewReader(exp), &fuzzKey(t).PublicKey); err != nil || res.VerifiedThrough != 4 {
			t.Fatalf("valid-export seed: %+v, %v", res, err)
		}
		return
	}
	ctx := context.Background()
	ts := openTest(t, func(o *Options) { o.CheckpointEvery = 3 })
	ts.signer.key = fuzzKey(t)
	ts.Close(ctx)
	ts.Store = ts.open(t, func(o *Options) { o.CheckpointEvery = 3 })
	for i := range 4 {
		err := ts.Update(ctx, func(tx *Tx) error {
			if err := examples.Put(tx, fmt.Sprintf("f%d", i), &storepb.Example{Name: "名", Count: int64(i)}); err != nil {
				return err
			}
			return tx.Audit(Event{Actor: "fuzz", Action: "example.put", Subject: fmt.Sprintf("u/f%d", i), Outcome: OutcomeOK,
				Details: map[string]string{"n": fmt.Sprint(i), "quote": `"\` + "\u2028"}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var exp bytes.Buffer
	if err := ts.ExportAudit(ctx, &exp, 0, 0); err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzVerifyExport", "valid-export", exp.Bytes())
	lines := strings.SplitAfter(exp.String(), "\n")
	writeSeed(t, "FuzzVerifyExport", "header-only", []byte(lines[0]))
	writeSeed(t, "FuzzVerifyExport", "swapped", []byte(lines[0]+lines[2]+lines[1]+strings.Join(lines[3:], "")))

	r1, err := ts.AuditRecord(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzDecodeCanonicalRecord", "record", canonicalRecord(r1))
	writeSeed(t, "FuzzDecodeCanonicalRecord", "minimal", canonicalRecord(&Record{Seq: 1, Action: "a", Outcome: "ok"}))
	stored, _, _ := ts.getRaw(auditRecordKey(1))
	writeSeed(t, "FuzzDecodeStoredAudit", "record", stored)
	ck, _, _ := ts.getRaw(auditCheckpointKey(3))
	writeSeed(t, "FuzzDecodeStoredAudit", "checkpoint", ck)

	page, err := examples.List(ctx, ts.Store, "", ListOptions{Limit: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzListCursor", "cursor", []byte(page.Next))
	writeSeed(t, "FuzzListCursor", "other-prefix", []byte(base64.RawURLEncoding.EncodeToString([]byte("o/x"))))

	env, _, _ := ts.getRaw("u/f1")
	writeSeed(t, "FuzzDecodeEnvelope", "record", env)
	withExp, err := encodeEnvelope(&storepb.IndexEntry{Owner: "u/f1"}, 1<<60, true)
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzDecodeEnvelope", "expiring", withExp)
}

// FuzzVerifyExport: the verifier reads files handed in by anyone; it must never panic,
// and must never accept input that does not re-verify after a round trip of its records.
func FuzzVerifyExport(f *testing.F) {
	pub := &fuzzKey(f).PublicKey
	f.Add([]byte(`{"type":"header","format":"hufu-audit-export/1","from":1,"to":0,"prev":"` + strings.Repeat("00", 32) + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := VerifyExport(bytes.NewReader(b), pub)
		if err == nil && res.Records > 0 && res.VerifiedThrough == 0 {
			t.Fatalf("accepted %d records with no valid checkpoint", res.Records)
		}
		_, _ = VerifyExport(bytes.NewReader(b), nil)
	})
}

// FuzzDecodeEnvelope: stored values are untrusted (disk corruption, tampering).
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte{envelopeV1, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		_ = env.live(0)
		var ex storepb.Example
		if env.into(&ex) == nil {
			// What decodes must re-encode to an envelope that decodes to the same message.
			again, err := encodeEnvelope(&ex, env.expires, env.hasExp)
			if err != nil {
				t.Fatal(err)
			}
			env2, err := decodeEnvelope(again)
			var ex2 storepb.Example
			if err != nil || env2.into(&ex2) != nil || !proto.Equal(&ex, &ex2) || env2.expires != env.expires {
				t.Fatalf("re-encoded envelope differs: %v", err)
			}
		}
	})
}

// FuzzDecodeCanonicalRecord: the canonical layout is strict, so decoding and re-encoding
// gives back exactly the input.
func FuzzDecodeCanonicalRecord(f *testing.F) {
	f.Add(canonicalRecord(&Record{Seq: 7, Action: "a", Outcome: "ok", Details: map[string]string{"k": "v"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeCanonicalRecord(b)
		if err != nil {
			return
		}
		if again := canonicalRecord(r); !bytes.Equal(again, b) {
			t.Fatalf("not canonical:\n in %x\nout %x", b, again)
		}
	})
}

// FuzzDecodeStoredAudit: audit records and checkpoints as read from disk.
func FuzzDecodeStoredAudit(f *testing.F) {
	f.Add([]byte{0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeAuditRecord(b); err == nil {
			_ = canonicalRecord(r)
		}
		if c, err := decodeCheckpoint(b); err == nil {
			_ = checkpointDigest(c)
		}
	})
}

// FuzzListCursor: cursors come back from API clients. A cursor that is accepted must make
// the listing start strictly after a key inside the prefix.
func FuzzListCursor(f *testing.F) {
	f.Add([]byte("dS94"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := ListOptions{Prefix: "u/", Cursor: string(b)}
		start, err := o.normalise()
		if err != nil || len(b) == 0 {
			return
		}
		if !strings.HasPrefix(string(start), "u/") || start[len(start)-1] != 0 {
			t.Fatalf("cursor %q starts listing at %q", b, start)
		}
	})
}
