package bidopening

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// normalized returns r with its times in UTC (and no monotonic reading) and empty slices as
// nil, so that reports can be compared with reflect.DeepEqual.
func normalized(r *Report) *Report {
	n := *r
	o := &n.Opening
	o.WindowStart, o.WindowEnd, o.SealedAt, o.ClosedAt = o.WindowStart.UTC(), o.WindowEnd.UTC(), o.SealedAt.UTC(), o.ClosedAt.UTC()
	n.Envelopes = slices.Clone(r.Envelopes)
	for i := range n.Envelopes {
		n.Envelopes[i].RegisteredAt = n.Envelopes[i].RegisteredAt.UTC()
	}
	n.Consents = slices.Clone(r.Consents)
	for i := range n.Consents {
		n.Consents[i].AcceptedAt = n.Consents[i].AcceptedAt.UTC()
	}
	n.Releases = slices.Clone(r.Releases)
	for i := range n.Releases {
		n.Releases[i].At = n.Releases[i].At.UTC()
	}
	n.Attempts = slices.Clone(r.Attempts)
	for i := range n.Attempts {
		n.Attempts[i].At = n.Attempts[i].At.UTC()
	}
	return &n
}

func TestReportRoundTrip(t *testing.T) {
	f := getFixture(t)
	want := f.report(t)
	b := mustSign(t, want, reportKey)
	got, err := Verify(b, reportKey.PublicKey())
	if err != nil {
		t.Fatalf("Verify: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(normalized(got), normalized(want)) {
		t.Fatalf("Verify returned\n%+v\nwant\n%+v", got, want)
	}
	lines := splitLines(b)
	wantTypes := []string{"opening", "envelope", "envelope", "envelope", "envelope", "consent", "consent",
		"release", "release", "release", "attempt", "attempt", "attempt", "audit", "signature"}
	if len(lines) != len(wantTypes) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(wantTypes), b)
	}
	for i, l := range lines {
		if want := `{"type":"` + wantTypes[i] + `",`; !bytes.HasPrefix(l, []byte(want)) || !bytes.HasSuffix(l, []byte("}\n")) {
			t.Errorf("line %d is not a %s line: %s", i+1, wantTypes[i], l)
		}
	}
	// A report and a file with its body re-signed are the same report.
	again, err := Verify(signBody(t, joinLines(lines[:len(lines)-1]), reportKey), reportKey.PublicKey())
	if err != nil || !reflect.DeepEqual(normalized(again), normalized(want)) {
		t.Fatalf("re-signed body: %v", err)
	}
}

// TestReportKnownAnswer pins the JSON of each line kind and the manifest hash, computed
// independently of this package (Python's hashlib over the documented bytes).
func TestReportKnownAnswer(t *testing.T) {
	envs := []Envelope{
		{ID: "env-b1", Serial: "5B00", CiphertextSHA256: fill(0x22), RegisteredAt: time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)},
		{ID: "env-a1", Serial: "4a3f", CiphertextSHA256: fill(0x11), RegisteredAt: time.Date(2026, 12, 1, 7, 0, 0, 500, time.UTC)},
	}
	gotManifest := ManifestSHA256(envs)
	if hex.EncodeToString(gotManifest[:]) != manifestKAT {
		t.Errorf("ManifestSHA256 = %x, want %s", gotManifest, manifestKAT)
	}
	if ManifestSHA256([]Envelope{envs[1], envs[0]}) != gotManifest {
		t.Error("ManifestSHA256 depends on the order of its argument")
	}
	// The length prefixes make the encoding unambiguous: moving a byte from id to serial
	// changes the hash.
	moved := []Envelope{{ID: "env-a", Serial: "14a3f", CiphertextSHA256: fill(0x11)}}
	if ManifestSHA256(moved) == ManifestSHA256(envs[1:]) {
		t.Error("ManifestSHA256 does not separate id and serial")
	}

	o := Opening{
		ID: "opn-1", System: "kaibiao-01", ProjectCode: "ZB-1", ProjectName: `工程 "A" & <B>`, Platform: "平台",
		WindowStart: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), WindowEnd: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		SealedAt: time.Date(2026, 12, 1, 8, 0, 0, 100, time.UTC), ClosedAt: time.Date(2026, 12, 1, 10, 5, 0, 0, time.FixedZone("CST", 8*3600)),
		ManifestSHA256: fill(0xab),
	}
	tests := []struct {
		name string
		line any
		want string
	}{
		{"opening", o.line(2), `{"type":"opening","id":"opn-1","system":"kaibiao-01","project_code":"ZB-1","project_name":"工程 \"A\" & <B>","platform":"平台","window_start":"2026-12-01T09:00:00Z","window_end":"2026-12-01T10:00:00Z","sealed_at":"2026-12-01T08:00:00.0000001Z","closed_at":"2026-12-01T02:05:00Z","envelopes":2,"manifest_sha256":"` + strings.Repeat("ab", 32) + `"}`},
		{"envelope", envs[1].line(), `{"type":"envelope","id":"env-a1","serial":"4a3f","ciphertext_sha256":"` + strings.Repeat("11", 32) + `","registered_at":"2026-12-01T07:00:00.0000005Z"}`},
		{"consent", (&Consent{Session: "s1", Serial: "4a3f", Delegated: true, AcceptedAt: o.WindowStart, Statement: "a\nb", Certificate: []byte{0x30, 0x00}}).line(),
			`{"type":"consent","session":"s1","serial":"4a3f","delegated":true,"accepted_at":"2026-12-01T09:00:00Z","statement":"a\nb","signature":"` + base64.StdEncoding.EncodeToString(make([]byte, 64)) + `","certificate":"MAA="}`},
		{"release", (&Release{Envelope: "env-a1", At: o.WindowEnd, Outcome: "c3_mismatch", Via: ViaRelease}).line(), `{"type":"release","envelope":"env-a1","at":"2026-12-01T10:00:00Z","outcome":"c3_mismatch","via":"release"}`},
		{"attempt", (&Attempt{At: o.WindowEnd, Via: ViaConsent, Reason: "before_window"}).line(), `{"type":"attempt","at":"2026-12-01T10:00:00Z","via":"consent","envelope":"","reason":"before_window"}`},
		{"audit", (&AuditPosition{Seq: 18446744073709551615, Head: fill(0x01)}).line(), `{"type":"audit","seq":18446744073709551615,"head":"` + strings.Repeat("01", 32) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := encodeLine(&buf, tt.line); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// manifestKAT is SHA-256 of "hufu/opening/v1 manifest\x00" ‖ len32("env-a1") ‖ "env-a1" ‖
// len32("4a3f") ‖ "4a3f" ‖ 0x11×32 ‖ len32("env-b1") ‖ "env-b1" ‖ len32("5B00") ‖ "5B00" ‖
// 0x22×32, computed with Python's hashlib.
const manifestKAT = "6918a21db3c6dff5f01b369be982e30764cb637442e96c482d2cfc80ce1f000a"

// TestSignatureCoversDocumentedBytes checks the signature line against the documented
// formula with the standard library alone: key_id = SHA-256(PKIX DER), and the signature is
// ECDSA over SHA-256("hufu/opening/v1 report" ‖ 0x00 ‖ everything before the line).
func TestSignatureCoversDocumentedBytes(t *testing.T) {
	b := mustSign(t, getFixture(t).report(t), reportKey)
	lines := splitLines(b)
	body := joinLines(lines[:len(lines)-1])
	var sl struct {
		Type, KeyID, Signature string
	}
	if err := json.Unmarshal(lines[len(lines)-1], &struct {
		Type      *string `json:"type"`
		KeyID     *string `json:"key_id"`
		Signature *string `json:"signature"`
	}{&sl.Type, &sl.KeyID, &sl.Signature}); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(reportKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if id := sha256.Sum256(der); sl.KeyID != hex.EncodeToString(id[:]) {
		t.Errorf("key_id %s is not SHA-256 of the PKIX key", sl.KeyID)
	}
	sig, err := base64.StdEncoding.DecodeString(sl.Signature)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(append([]byte("hufu/opening/v1 report\x00"), body...))
	if !ecdsa.VerifyASN1(reportKey.PublicKey(), digest[:], sig) {
		t.Error("the signature is not over the documented bytes")
	}
}

// mutation is one field of one line given another value, the line otherwise unchanged.
type mutation struct {
	typ, field string
	line       []byte
}

func encodeJSONValue(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// otherValue returns a different value of the same kind, as plausible as possible: a time
// 1 ns later, a number plus one, the other bool, a bit flipped in decoded base64, the last
// character of a string changed within its class (so hex stays hex).
func otherValue(field string, v any) any {
	switch v := v.(type) {
	case bool:
		return !v
	case json.Number:
		n, err := strconv.ParseUint(v.String(), 10, 64)
		if err != nil {
			panic(err)
		}
		return json.Number(strconv.FormatUint(n+1, 10))
	case string:
		if tm, err := parseTime(v); err == nil {
			return formatTime(tm.Add(time.Nanosecond))
		}
		if field == "signature" || field == "certificate" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				panic(err)
			}
			b[len(b)/2] ^= 0x01
			return base64.StdEncoding.EncodeToString(b)
		}
		if v == "" {
			return "x"
		}
		last := v[len(v)-1]
		for _, class := range []string{"0123456789", "abcdef", "ghijklmnopqrstuvwxyz", "ABCDEF", "GHIJKLMNOPQRSTUVWXYZ"} {
			if i := strings.IndexByte(class, last); i >= 0 {
				return v[:len(v)-1] + string(class[(i+1)%len(class)])
			}
		}
		return v + "x"
	}
	panic(fmt.Sprintf("unexpected JSON value %T", v))
}

// fieldMutations changes every field of a line in turn, in place. The fields come from
// decoding the line itself, so none is forgotten.
func fieldMutations(t testing.TB, line []byte) []mutation {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	typ, _ := m["type"].(string)
	var out []mutation
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		key := encodeJSONValue(t, k)
		old := append(append(slices.Clone(key), ':'), encodeJSONValue(t, m[k])...)
		if bytes.Count(line, old) != 1 {
			t.Fatalf("field %s of %s line not found exactly once", k, typ)
		}
		repl := append(append(slices.Clone(key), ':'), encodeJSONValue(t, otherValue(k, m[k]))...)
		out = append(out, mutation{typ: typ, field: k, line: bytes.Replace(line, old, repl, 1)})
	}
	return out
}

// boundFields are those that even the appliance, re-signing the report, cannot change
// undetected: they are covered by a bidder's signature, the sealed manifest hash or the
// structure itself.
var boundFields = map[string]bool{
	"opening.type": true, "opening.id": true, "opening.project_code": true, "opening.envelopes": true, "opening.manifest_sha256": true,
	"envelope.type": true, "envelope.id": true, "envelope.serial": true, "envelope.ciphertext_sha256": true,
	"consent.type": true, "consent.session": true, "consent.serial": true, "consent.statement": true, "consent.signature": true,
	"release.type": true, "attempt.type": true, "audit.type": true,
}

func TestVerifyDetectsEveryFieldChange(t *testing.T) {
	f := getFixture(t)
	pub := reportKey.PublicKey()
	good := mustSign(t, f.report(t), reportKey)
	lines := splitLines(good)
	fields := 0
	for i, line := range lines {
		muts := fieldMutations(t, line)
		fields += len(muts)
		for _, m := range muts {
			t.Run(fmt.Sprintf("line %d %s.%s", i+1, m.typ, m.field), func(t *testing.T) {
				edited := slices.Clone(lines)
				edited[i] = m.line
				_, err := Verify(joinLines(edited), pub)
				var ve *VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("edited report: err = %v, want a *VerifyError", err)
				}
				if i == len(lines)-1 || !boundFields[m.typ+"."+m.field] {
					return
				}
				resigned := signBody(t, joinLines(edited[:len(edited)-1]), reportKey)
				if _, err := Verify(resigned, pub); err == nil {
					t.Fatalf("edited and re-signed report verifies:\n%s", m.line)
				}
			})
		}
	}
	// opening 12, envelope 5 × 4, consent 8 × 2, release 5 × 3, attempt 5 × 3, audit 3,
	// signature 3.
	if want := 12 + 5*4 + 8*2 + 5*3 + 5*3 + 3 + 3; fields != want {
		t.Errorf("mutated %d fields, want %d", fields, want)
	}
}

func TestVerifyDetectsLineEdits(t *testing.T) {
	f := getFixture(t)
	pub := reportKey.PublicKey()
	good := mustSign(t, f.report(t), reportKey)
	lines := splitLines(good)
	other := newP256Signer(t)

	type edit struct {
		name string
		b    []byte
	}
	var edits []edit
	for i := range lines {
		edits = append(edits,
			edit{fmt.Sprintf("line %d removed", i+1), joinLines(slices.Delete(slices.Clone(lines), i, i+1))},
			edit{fmt.Sprintf("line %d duplicated", i+1), joinLines(slices.Insert(slices.Clone(lines), i, lines[i]))},
		)
		if i+1 < len(lines) {
			swapped := slices.Clone(lines)
			swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
			edits = append(edits, edit{fmt.Sprintf("lines %d and %d swapped", i+1, i+2), joinLines(swapped)})
		}
	}
	otherKeyReport := mustSign(t, f.report(t), other)
	otherLines := splitLines(otherKeyReport)
	edits = append(edits,
		edit{"a release line appended after the signature", append(slices.Clone(good), lines[8]...)},
		edit{"a second signature line", append(slices.Clone(good), lines[len(lines)-1]...)},
		edit{"signed by another key", otherKeyReport},
		edit{"another key's signature line", joinLines(append(slices.Clone(lines[:len(lines)-1]), otherLines[len(otherLines)-1]))},
		edit{"last newline missing", good[:len(good)-1]},
		edit{"a blank line appended", append(slices.Clone(good), '\n')},
		edit{"CRLF line ends", bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))},
		edit{"a space before the signature line", joinLines(append(slices.Clone(lines[:len(lines)-1]), append([]byte(" "), lines[len(lines)-1]...)))},
		edit{"empty", nil},
		edit{"a newline only", []byte("\n")},
		edit{"body only", joinLines(lines[:len(lines)-1])},
		edit{"signature line only", lines[len(lines)-1]},
		edit{"larger than MaxReportSize", append(bytes.Repeat([]byte(" "), MaxReportSize), good...)},
	)
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			r, err := Verify(e.b, pub)
			t.Log(err)
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
				t.Fatalf("err = %v, want a *VerifyError", err)
			}
			if r != nil {
				t.Fatal("a report returned with an error")
			}
		})
	}
}

func TestVerifyKey(t *testing.T) {
	b := mustSign(t, getFixture(t).report(t), reportKey)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]*ecdsa.PublicKey{"nil": nil, "P-384": &p384.PublicKey} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(b, pub)
			var ve *VerifyError
			if err == nil || errors.As(err, &ve) {
				t.Fatalf("err = %v, want an error about the key", err)
			}
		})
	}
}

// TestVerifySemantics edits a report and signs it with the right key without Sign's checks,
// as a faulty or dishonest appliance could: Verify must still reject it, for the right
// reason and at the right line. Sign must refuse the same edits.
func TestVerifySemantics(t *testing.T) {
	f := getFixture(t)
	pub := reportKey.PublicKey()
	// Lines: 1 opening, 2-5 envelopes a1 a2 b1 c1, 6 consent alpha, 7 consent beta,
	// 8-10 releases b1 (phone) a1 a2, 11-13 attempts, 14 audit, 15 signature.
	alphaConsent := func(edit func(*Statement)) Consent {
		s := f.statement(f.alpha, "scan-7f3a", at(9, 0, 58, 123456789), "env-a1", "env-a2")
		edit(&s)
		return consentFor(t, f.alpha, s, at(9, 1, 0, 0), false)
	}
	otherKey := &bidder{signer: newSM2Key(t)}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(r *Report)
		reason Reason // "" for a report that verifies
		line   int
	}{
		// Valid variations.
		{"as made", func(*Report) {}, "", 0},
		{"phone release without consent", func(r *Report) { r.Consents = r.Consents[:1] }, "", 0},
		{"nothing but the manifest", func(r *Report) { r.Consents, r.Releases, r.Attempts = nil, nil, nil }, "", 0},
		{"no envelopes", func(r *Report) {
			r.Envelopes, r.Consents, r.Releases = nil, nil, nil
			r.Opening.ManifestSHA256 = ManifestSHA256(nil)
		}, "", 0},
		{"releases at the same instant", func(r *Report) { r.Releases[2].At = r.Releases[1].At }, "", 0},
		{"consents at the same instant, ordered by session", func(r *Report) { r.Consents[1].AcceptedAt = r.Consents[0].AcceptedAt }, "", 0},
		{"closed before the window's end", func(r *Report) { r.Opening.ClosedAt = at(9, 30, 0, 0) }, "", 0},
		{"times in another zone", func(r *Report) { r.Opening.ClosedAt = r.Opening.ClosedAt.In(time.FixedZone("CST", 8*3600)) }, "", 0},

		// The header.
		{"sealed after the window opened", func(r *Report) { r.Opening.SealedAt = windowStart.Add(time.Nanosecond) }, ReasonWindow, 1},
		{"window ends before it starts", func(r *Report) { r.Opening.WindowEnd = windowStart.Add(-time.Nanosecond) }, ReasonWindow, 1},
		{"closed before the window", func(r *Report) { r.Opening.ClosedAt = windowStart.Add(-time.Nanosecond) }, ReasonWindow, 1},
		{"bad opening id", func(r *Report) { r.Opening.ID = "opn 42" }, ReasonMalformed, 1},
		{"project name with a newline", func(r *Report) { r.Opening.ProjectName = "a\nb" }, ReasonMalformed, 1},
		{"unset time", func(r *Report) { r.Opening.SealedAt = time.Time{} }, ReasonMalformed, 1},

		// The manifest.
		{"manifest hash not the sealed one", func(r *Report) { r.Opening.ManifestSHA256[0] ^= 1 }, ReasonManifest, 1},
		{"envelope removed after sealing", func(r *Report) { r.Envelopes = r.Envelopes[:3] }, ReasonManifest, 1},
		{"ciphertext replaced after sealing", func(r *Report) { r.Envelopes[0].CiphertextSHA256 = ctHash("forged") }, ReasonManifest, 1},
		{"envelope reassigned after sealing", func(r *Report) { r.Envelopes[3].Serial = f.alpha.serial }, ReasonManifest, 1},
		{"envelope registered after sealing", func(r *Report) { r.Envelopes[3].RegisteredAt = sealedAt.Add(time.Nanosecond) }, ReasonWindow, 5},
		{"envelopes out of order", func(r *Report) { r.Envelopes[0], r.Envelopes[1] = r.Envelopes[1], r.Envelopes[0] }, ReasonMalformed, 3},

		// Consents.
		{"consent accepted before the window", func(r *Report) { r.Consents[0].AcceptedAt = windowStart.Add(-time.Nanosecond) }, ReasonWindow, 6},
		{"statement dated before the window", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Time = windowStart.Add(-time.Nanosecond) })
		}, ReasonWindow, 6},
		{"statement dated after the window", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Time = windowEnd.Add(time.Nanosecond) })
		}, ReasonWindow, 6},
		{"consent accepted after closing", func(r *Report) { r.Opening.ClosedAt = at(9, 2, 0, 0) }, ReasonWindow, 7},
		{"consent signed by another key", func(r *Report) { r.Consents[0].Signature = otherKey.sign(t, r.Consents[0].Statement) }, ReasonConsent, 6},
		{"another bidder's certificate", func(r *Report) { r.Consents[0].Certificate = f.beta.cert }, ReasonConsent, 6},
		{"certificate with the serial and another key", func(r *Report) {
			r.Consents[0].Certificate = selfSigned(t, otherKey.signer, "甲公司", f.alpha.serial, certFrom, certUntil)
		}, ReasonConsent, 6},
		{"certificate expired at acceptance", func(r *Report) {
			r.Consents[0].Certificate = selfSigned(t, f.alpha.signer, "甲公司", f.alpha.serial, certFrom, windowStart)
		}, ReasonConsent, 6},
		{"certificate with a P-256 key", func(r *Report) {
			r.Consents[0].Certificate = selfSigned(t, p256, "甲公司", f.alpha.serial, certFrom, certUntil)
		}, ReasonConsent, 6},
		{"certificate that is not DER", func(r *Report) { r.Consents[0].Certificate = []byte("not a certificate") }, ReasonConsent, 6},
		{"statement names an envelope not in the manifest", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) {
				s.Envelopes = append(s.Envelopes, StatementEnvelope{ID: "env-z9", CiphertextSHA256: ctHash("z9"), T1SHA256: T1Hash(&f.t1)})
			})
		}, ReasonConsent, 6},
		{"statement with another ciphertext", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Envelopes[1].CiphertextSHA256 = ctHash("forged") })
		}, ReasonConsent, 6},
		{"statement names another bidder's envelope", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) {
				b1 := f.statement(f.beta, "x", windowStart, "env-b1").Envelopes[0]
				s.Envelopes = append(s.Envelopes, b1)
			})
		}, ReasonConsent, 6},
		{"statement for another opening", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Opening = "opn-2026-0041" })
		}, ReasonConsent, 6},
		{"statement for another project", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Project = "ZB-2026-0816" })
		}, ReasonConsent, 6},
		{"statement's serial spelled differently", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Serial = strings.ToUpper(s.Serial) })
			r.Consents[0].Serial = f.alpha.serial
		}, ReasonConsent, 6},
		{"statement for another session", func(r *Report) {
			r.Consents[0] = alphaConsent(func(s *Statement) { s.Session = "scan-0000" })
			r.Consents[0].Session = "scan-7f3a"
		}, ReasonConsent, 6},
		{"statement that does not parse", func(r *Report) {
			r.Consents[0].Statement = strings.TrimPrefix(r.Consents[0].Statement, "hufu/opening/v1 consent\n")
			r.Consents[0].Signature = f.alpha.sign(t, r.Consents[0].Statement)
		}, ReasonConsent, 6},
		{"two consents in one session", func(r *Report) {
			r.Consents[1] = consentFor(t, f.beta, f.statement(f.beta, "scan-7f3a", at(9, 2, 30, 0), "env-b1"), at(9, 2, 30, 500000000), true)
		}, ReasonConsent, 7},
		{"consents out of order", func(r *Report) { r.Consents[0], r.Consents[1] = r.Consents[1], r.Consents[0] }, ReasonMalformed, 7},

		// Releases.
		{"release before the window", func(r *Report) { r.Releases[0].At = windowStart.Add(-time.Nanosecond) }, ReasonWindow, 8},
		{"release after closing", func(r *Report) { r.Releases[2].At = closedAt.Add(time.Nanosecond) }, ReasonWindow, 10},
		{"bulk release without consent", func(r *Report) {
			r.Releases = append(r.Releases, Release{Envelope: "env-c1", At: at(9, 6, 0, 0), Outcome: OutcomeOK, Via: ViaRelease})
		}, ReasonRelease, 11},
		{"bulk release before the consent", func(r *Report) {
			r.Consents[0].AcceptedAt = at(9, 6, 0, 0)
			r.Consents[0], r.Consents[1] = r.Consents[1], r.Consents[0]
		}, ReasonRelease, 9},
		{"release of an envelope not in the manifest", func(r *Report) { r.Releases[0].Envelope = "env-z9" }, ReasonRelease, 8},
		{"release via an unknown path", func(r *Report) { r.Releases[0].Via = ViaDecrypt }, ReasonMalformed, 8},
		{"releases out of order", func(r *Report) { r.Releases[1].At = r.Releases[0].At.Add(-time.Nanosecond) }, ReasonMalformed, 9},
		{"release outcome not a token", func(r *Report) { r.Releases[0].Outcome = "C3 mismatch" }, ReasonMalformed, 8},

		// Attempts and the audit position.
		{"attempt after closing", func(r *Report) { r.Attempts[2].At = closedAt.Add(time.Nanosecond) }, ReasonWindow, 13},
		{"attempts out of order", func(r *Report) { r.Attempts[0].At = at(9, 11, 0, 0) }, ReasonMalformed, 12},
		{"audit seq 0", func(r *Report) { r.Audit.Seq = 0 }, ReasonMalformed, 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.report(t)
			tt.edit(r)
			got, err := Verify(resign(t, r, reportKey), pub)
			_, signErr := r.Sign(context.Background(), reportKey)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if signErr != nil {
					t.Fatalf("Sign: %v", signErr)
				}
				if !reflect.DeepEqual(normalized(got), normalized(r)) {
					t.Fatal("Verify did not return the report")
				}
				return
			}
			t.Log(err)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: err = %v, want a *VerifyError", err)
			}
			if ve.Reason != tt.reason || ve.Line != tt.line {
				t.Errorf("Verify: %s at line %d, want %s at line %d: %v", ve.Reason, ve.Line, tt.reason, tt.line, err)
			}
			var se *VerifyError
			if !errors.As(signErr, &se) || *se != *ve {
				t.Errorf("Sign: err = %v, want %v", signErr, ve)
			}
		})
	}
}

// TestVerifyBodyEdits edits the bytes of a report and re-signs them: the format's
// strictness, not only the signature, rejects every non-canonical or misplaced line.
func TestVerifyBodyEdits(t *testing.T) {
	f := getFixture(t)
	good := mustSign(t, f.report(t), reportKey)
	lines := splitLines(good)
	body := lines[:len(lines)-1] // 14 lines
	replace := func(n int, old, new string) [][]byte {
		out := slices.Clone(body)
		if !bytes.Contains(out[n-1], []byte(old)) {
			t.Fatalf("line %d lacks %s", n, old)
		}
		out[n-1] = bytes.Replace(out[n-1], []byte(old), []byte(new), 1)
		return out
	}
	move := func(from, to int) [][]byte {
		out := slices.Delete(slices.Clone(body), from-1, from)
		return slices.Insert(out, to-1, body[from-1])
	}
	insert := func(n int, line string) [][]byte { return slices.Insert(slices.Clone(body), n-1, []byte(line+"\n")) }
	head := hex.EncodeToString(f.report(t).Audit.Head[:])
	tests := []struct {
		name   string
		lines  [][]byte
		reason Reason
		line   int
	}{
		{"header count above the envelope lines", replace(1, `"envelopes":4`, `"envelopes":5`), ReasonManifest, 1},
		{"header count below the envelope lines", replace(1, `"envelopes":4`, `"envelopes":3`), ReasonManifest, 1},
		{"negative count", replace(1, `"envelopes":4`, `"envelopes":-4`), ReasonMalformed, 1},
		{"count as a float", replace(1, `"envelopes":4`, `"envelopes":4.0`), ReasonMalformed, 1},
		{"envelope lines swapped", move(2, 3), ReasonMalformed, 3},
		{"consent line duplicated", slices.Insert(slices.Clone(body), 6, body[5]), ReasonMalformed, 7},
		{"release after the attempts", move(8, 13), ReasonMalformed, 13},
		{"envelope after a consent", move(5, 6), ReasonManifest, 1}, // the consent ends the manifest
		{"second opening line", slices.Insert(slices.Clone(body), 1, body[0]), ReasonMalformed, 2},
		{"opening line not first", move(1, 2), ReasonMalformed, 1},
		{"no audit line", body[:13], ReasonMalformed, 14},
		{"second audit line", append(slices.Clone(body), body[13]), ReasonMalformed, 15},
		{"no opening line", body[1:], ReasonMalformed, 1},
		{"signature line inside the body", slices.Insert(slices.Clone(body), 1, lines[14]), ReasonMalformed, 2},
		{"unknown line type", insert(2, `{"type":"note","text":"x"}`), ReasonMalformed, 2},
		{"type not first", replace(14, `{"type":"audit","seq":48213,`, `{"seq":48213,"type":"audit",`), ReasonMalformed, 14},
		{"unknown field", replace(14, `}`, `,"extra":1}`), ReasonMalformed, 14},
		{"missing field", replace(8, `,"outcome":"ok"`, ``), ReasonMalformed, 8},
		{"fields reordered", replace(14, `"seq":48213,"head":"`+head+`"`, `"head":"`+head+`","seq":48213`), ReasonMalformed, 14},
		{"duplicate key", replace(14, `"seq":48213`, `"seq":1,"seq":48213`), ReasonMalformed, 14},
		{"key in another case", replace(14, `"seq"`, `"Seq"`), ReasonMalformed, 14},
		{"white space", replace(14, `"seq":`, `"seq": `), ReasonMalformed, 14},
		{"trailing data", replace(14, `}`, `}{}`), ReasonMalformed, 14},
		{"escaped character", replace(1, `"kaibiao-01"`, `"kaibiao\u002d01"`), ReasonMalformed, 1},
		{"HTML-escaped character", replace(1, `& <B>`, `\u0026 <B>`), ReasonMalformed, 1},
		{"upper-case hex", replace(14, head, strings.ToUpper(head)), ReasonMalformed, 14},
		{"time with trailing zeros", replace(8, `"at":"2026-12-01T09:03:00Z"`, `"at":"2026-12-01T09:03:00.000Z"`), ReasonMalformed, 8},
		{"time with an offset", replace(8, `"at":"2026-12-01T09:03:00Z"`, `"at":"2026-12-01T17:03:00+08:00"`), ReasonMalformed, 8},
		{"seq with a leading zero", replace(14, `"seq":48213`, `"seq":048213`), ReasonMalformed, 14},
		{"bool as a string", replace(6, `"delegated":false`, `"delegated":"false"`), ReasonMalformed, 6},
		{"null field", replace(8, `"outcome":"ok"`, `"outcome":null`), ReasonMalformed, 8},
		{"base64 without padding", replace(6, `=","certificate"`, `","certificate"`), ReasonMalformed, 6},
		{"line too long", insert(11, `{"type":"attempt","at":"2026-12-01T09:00:00Z","via":"decrypt","envelope":"","reason":"`+strings.Repeat("a", maxLineSize)+`"}`), ReasonMalformed, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(signBody(t, joinLines(tt.lines), reportKey), reportKey.PublicKey())
			t.Log(err)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *VerifyError", err)
			}
			if ve.Reason != tt.reason || ve.Line != tt.line {
				t.Errorf("%s at line %d, want %s at line %d: %v", ve.Reason, ve.Line, tt.reason, tt.line, err)
			}
		})
	}
}

// failingSigner injects the failures of an HSM that a real key cannot produce.
type failingSigner struct {
	*testSigner
	sig []byte
	err error
}

func (s *failingSigner) SignDigest(context.Context, []byte) ([]byte, error) { return s.sig, s.err }

func TestSignRefuses(t *testing.T) {
	f := getFixture(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(*Report)
		signer Signer
	}{
		{"invalid UTF-8 in the project name", func(r *Report) { r.Opening.ProjectName = "工程\xff" }, reportKey},
		{"invalid UTF-8 in a statement", func(r *Report) { r.Consents[0].Statement += "\xff" }, reportKey},
		{"a P-384 key", func(*Report) {}, &testSigner{p384}},
		{"the signer fails", func(*Report) {}, &failingSigner{testSigner: reportKey, err: errors.New("HSM unavailable")}},
		{"the signer returns a bad signature", func(*Report) {}, &failingSigner{testSigner: reportKey, sig: []byte{0x30, 0x00}}},
		{"the signer signs with another key", func(*Report) {}, &failingSigner{testSigner: reportKey, sig: func() []byte {
			b := mustSign(t, f.report(t), newP256Signer(t))
			l := splitLines(b)
			var sl signatureLine
			if err := json.Unmarshal(l[len(l)-1], &sl); err != nil {
				t.Fatal(err)
			}
			sig, _ := base64.StdEncoding.DecodeString(sl.Signature)
			return sig
		}()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.report(t)
			tt.edit(r)
			if b, err := r.Sign(context.Background(), tt.signer); err == nil {
				t.Fatalf("signed:\n%s", b)
			}
		})
	}
}
