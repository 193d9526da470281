package client

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/cosign"
)

// TestConsentStatementCheck is the phone's check of a DECRYPT consent statement against what
// it computed, statement by statement, including the differences the real appliance never
// produces (another consent point, a time outside the window, another serial): every one is
// ErrNotShown, and only the statement the phone expects gives its digest e.
func TestConsentStatementCheck(t *testing.T) {
	pk, req, err := cosign.StartKeygen(rand.Reader, []byte("consent test"))
	if err != nil {
		t.Fatal(err)
	}
	_, resp, err := cosign.ServerKeygen(rand.Reader, []byte("consent test"), req)
	if err != nil {
		t.Fatal(err)
	}
	share, public, err := pk.Finish(resp)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	opening := &hufuv1.OpeningSummary{Id: "0123456789abcdef0123", ProjectCode: "FZ-2026-118", ProjectName: "示范道路工程施工",
		WindowStart: timestamppb.New(start), WindowEnd: timestamppb.New(start.Add(2 * time.Hour))}
	cand := &hufuv1.Candidate{Serial: "5a0f"}
	for i, opts := range []*sm2.EncrypterOpts{sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2), sm2.ASN1EncrypterOpts} {
		ct, err := sm2.Encrypt(rand.Reader, public.PublicKey(), []byte("0123456789abcdef"), opts)
		if err != nil {
			t.Fatal(err)
		}
		cand.Envelopes = append(cand.Envelopes, &hufuv1.ConsentEnvelope{Id: []string{"bid-a", "bid-b"}[i], Ciphertext: ct})
	}
	shown := &hufuv1.ScanResponse{SessionId: "00112233445566778899", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT, Opening: opening,
		Candidates: []*hufuv1.Candidate{cand}}
	c, err := newConsentPoints(shown, cand, share)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.wire()) != 2 || len(c.wire()[0]) != cosign.PointSize {
		t.Fatalf("consent points: %x", c.wire())
	}

	honest := func() bidopening.Statement {
		return bidopening.Statement{Opening: opening.Id, Project: opening.ProjectCode, Serial: cand.Serial, Session: shown.SessionId,
			Time: start.Add(time.Minute), Envelopes: append([]bidopening.StatementEnvelope(nil), c.lines...)}
	}
	for _, tt := range []struct {
		name   string
		change func(*bidopening.Statement) // of the statement the phone expects
		edit   func(text string) string    // of its text, after
		ok     bool
	}{
		{name: "as computed", ok: true},
		{name: "at the window's end", change: func(s *bidopening.Statement) { s.Time = start.Add(2 * time.Hour) }, ok: true},
		{name: "another opening", change: func(s *bidopening.Statement) { s.Opening = "ffffffffffffffffffff" }},
		{name: "another project", change: func(s *bidopening.Statement) { s.Project = "FZ-2026-119" }},
		{name: "another serial", change: func(s *bidopening.Statement) { s.Serial = "5a0e" }},
		{name: "another session", change: func(s *bidopening.Statement) { s.Session = "99887766554433221100" }},
		{name: "before the window", change: func(s *bidopening.Statement) { s.Time = start.Add(-time.Second) }},
		{name: "after the window", change: func(s *bidopening.Statement) { s.Time = start.Add(2*time.Hour + time.Second) }},
		{name: "another consent point", change: func(s *bidopening.Statement) { s.Envelopes[1].T1SHA256[0] ^= 1 }},
		{name: "another ciphertext", change: func(s *bidopening.Statement) { s.Envelopes[0].CiphertextSHA256[31] ^= 1 }},
		{name: "an envelope left out", change: func(s *bidopening.Statement) { s.Envelopes = s.Envelopes[:1] }},
		{name: "an envelope added", change: func(s *bidopening.Statement) {
			s.Envelopes = append(s.Envelopes, bidopening.StatementEnvelope{ID: "bid-c"})
		}},
		{name: "another envelope id", change: func(s *bidopening.Statement) { s.Envelopes[1].ID = "bid-c" }},
		{name: "not a statement", edit: func(string) string { return "hufu/scan/v1 LOGIN\nsession=00112233445566778899" }},
		{name: "a trailing newline", edit: func(text string) string { return text + "\n" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := honest()
			if tt.change != nil {
				tt.change(&st)
			}
			text, err := st.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				text = tt.edit(text)
			}
			digests, err := c.statementDigest([]byte(text), opening, shown.SessionId, cand.Serial, &public)
			if !tt.ok {
				if !errors.Is(err, ErrNotShown) {
					t.Fatalf("got %v, want ErrNotShown", err)
				}
				return
			}
			want, derr := cosign.Digest(&public, nil, []byte(text))
			if err != nil || derr != nil || len(digests) != 1 || digests[0] != want {
				t.Fatalf("digest: %x %v %v", digests, err, derr)
			}
		})
	}

	// What cannot be consented to is refused before anything is sent.
	bad := &hufuv1.Candidate{Serial: "5a0f", Envelopes: []*hufuv1.ConsentEnvelope{{Id: "bid-x", Ciphertext: []byte{4, 1, 2}}}}
	if _, err := newConsentPoints(shown, bad, share); !errors.Is(err, ErrBadAnswer) {
		t.Fatalf("an unparseable ciphertext: %v", err)
	}
	if _, err := newConsentPoints(shown, &hufuv1.Candidate{Serial: "5a0f"}, share); err == nil {
		t.Fatal("consent with no envelope")
	}
	if _, err := newConsentPoints(&hufuv1.ScanResponse{}, cand, share); !errors.Is(err, ErrBadAnswer) {
		t.Fatalf("no opening shown: %v", err)
	}
}
