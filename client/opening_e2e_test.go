package client_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
)

// TestOpeningSDK runs a bid opening with the SDK only: the bid-opening system with its client
// certificate, the bidder's phone with ScanSession and AnswerSession. Where the person was
// shown something other than what the appliance's consent statement names (another project,
// an envelope renamed, the envelopes' ciphertexts swapped), the phone refuses with
// ErrNotShown before anything is cosigned; through the hall code it consents, the system
// releases the keys that were enveloped, and the report verifies.
func TestOpeningSDK(t *testing.T) {
	a := startAppliance(t, nil)
	sys := a.systemConn()
	openings := hufuv1.NewOpeningServiceClient(sys.ClientConn())
	scans := hufuv1.NewScanServiceClient(sys.ClientConn())
	p := a.newPhone("13800138050", "phone-bid-01")
	entry := mustCreate(t, p, "bid")
	// Bids are enveloped to the encryption certificate of the bidder's pair, and consented
	// and decrypted with its key.
	pair := issuePair(t, p, sys, entry.ID)
	serial, cert := pair.encSerial, pair.encCert
	entry, err := p.ks.Load(pair.encKeyID)
	if err != nil {
		t.Fatal(err)
	}
	qrResp, err := hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn()).GetQrKey(bg, &hufuv1.GetQrKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := client.ParseScanKey(qrResp.PublicKeyPem)
	if err != nil {
		t.Fatal(err)
	}

	now := a.clock.Now()
	created, err := openings.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "sdk-opening-1", ProjectCode: "FZ-2026-201",
		ProjectName: "示范桥梁工程", PlatformId: "demo", WindowStart: timestamppb.New(now.Add(time.Hour)), WindowEnd: timestamppb.New(now.Add(3 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	o := created.Opening
	keys := map[string][]byte{}
	var regs []*hufuv1.EnvelopeRegistration
	for i, opts := range []*sm2.EncrypterOpts{sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2), sm2.ASN1EncrypterOpts} {
		id := []string{"bid-1", "bid-2"}[i]
		keys[id] = make([]byte, 16)
		rand.Read(keys[id])
		ct, err := sm2.Encrypt(rand.Reader, cert.PublicKey.(*ecdsa.PublicKey), keys[id], opts)
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, &hufuv1.EnvelopeRegistration{EnvelopeId: id, CertificateSerial: serial, Ciphertext: ct})
	}
	if _, err := openings.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: regs}); err != nil {
		t.Fatal(err)
	}
	if _, err := openings.SealOpening(bg, &hufuv1.SealOpeningRequest{OpeningId: o.Id}); err != nil {
		t.Fatal(err)
	}
	a.clock.Advance(time.Hour + time.Minute)

	n := 0
	session := func(hall bool) *hufuv1.ScanSession {
		t.Helper()
		n++
		resp, err := scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "sdk-decrypt-" + string(rune('a'+n)), Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT,
			OpeningId: o.Id, Hall: hall})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Session
	}
	envelopesOf := func(shown *hufuv1.ScanResponse) []*hufuv1.ConsentEnvelope {
		t.Helper()
		if len(shown.Candidates) != 1 || shown.Candidates[0].Serial != serial || len(shown.Candidates[0].Envelopes) != 2 {
			t.Fatalf("candidates: %v", shown.Candidates)
		}
		return shown.Candidates[0].Envelopes
	}

	for _, tt := range []struct {
		name  string
		alter func(*hufuv1.ScanResponse)
		want  string
	}{
		{"another project shown", func(s *hufuv1.ScanResponse) { s.Opening.ProjectCode = "FZ-2026-999" }, "project"},
		{"an envelope renamed", func(s *hufuv1.ScanResponse) { envelopesOf(s)[1].Id = "bid-9" }, `"bid-9" was shown`},
		{"ciphertexts swapped", func(s *hufuv1.ScanResponse) {
			e := envelopesOf(s)
			e[0].Ciphertext, e[1].Ciphertext = e[1].Ciphertext, e[0].Ciphertext
		}, "another ciphertext than the one shown"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := session(false)
			shown, err := client.ScanSession(bg, p.conn, s.QrPayload, pinned)
			if err != nil {
				t.Fatal(err)
			}
			before := usageCount(t, p, entry.ID)
			tt.alter(shown)
			err = client.AnswerSession(bg, p.conn, p.ks, s.Id, serial, "", pin, shown)
			if !errors.Is(err, client.ErrNotShown) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrNotShown naming %q", err, tt.want)
			}
			if after := usageCount(t, p, entry.ID); after != before {
				t.Fatalf("usage records %d → %d: something was cosigned", before, after)
			}
			if err := client.DeclineSession(bg, p.conn, s.Id, "not what I was shown"); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Through the hall code: the scan starts the bidder's own session, which consents.
	hall := session(true)
	shown, err := client.ScanSession(bg, p.conn, hall.QrPayload, pinned)
	if err != nil {
		t.Fatalf("scan the hall code: %v", err)
	}
	if shown.SessionId == hall.Id || shown.Opening.GetId() != o.Id || shown.Opening.ProjectCode != "FZ-2026-201" {
		t.Fatalf("hall scan: session %s (hall %s), opening %v", shown.SessionId, hall.Id, shown.Opening)
	}
	if err := client.AnswerSession(bg, p.conn, p.ks, shown.SessionId, serial, "", pin, shown); err != nil {
		t.Fatalf("consent: %v", err)
	}
	if got, err := scans.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: shown.SessionId}); err != nil ||
		got.Session.State != hufuv1.SessionState_SESSION_STATE_COMPLETED || got.Session.ParentId != hall.Id {
		t.Fatalf("the bidder's session: %v %v", got, err)
	}

	released := map[string][]byte{}
	err = client.ReleaseOpening(bg, sys, &hufuv1.ReleaseRequest{OpeningId: o.Id}, func(r *hufuv1.ReleasedEnvelope) error {
		if r.Error != "" {
			t.Errorf("envelope %s: %s", r.EnvelopeId, r.Error)
		}
		released[r.EnvelopeId] = r.Key
		return nil
	})
	if err != nil || len(released) != 2 {
		t.Fatalf("release: %d answers, %v", len(released), err)
	}
	for id, k := range keys {
		if !bytes.Equal(released[id], k) {
			t.Fatalf("envelope %s released %x, enveloped %x", id, released[id], k)
		}
	}
	stop := errors.New("stop")
	if err := client.ReleaseOpening(bg, sys, &hufuv1.ReleaseRequest{OpeningId: o.Id, IncludeReleased: true}, func(*hufuv1.ReleasedEnvelope) error {
		return stop
	}); !errors.Is(err, stop) {
		t.Fatalf("the callback's error is not returned: %v", err)
	}

	if _, err := openings.CloseOpening(bg, &hufuv1.CloseOpeningRequest{OpeningId: o.Id}); err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	size, err := client.DownloadReport(bg, sys, o.Id, &report)
	if err != nil || size != int64(report.Len()) || size == 0 {
		t.Fatalf("report: %d bytes, %v", size, err)
	}
	keyResp, err := scans.GetScanKey(bg, &hufuv1.GetScanKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(keyResp.PublicKeyPem))
	auditKey, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bidopening.Verify(report.Bytes(), auditKey.(*ecdsa.PublicKey))
	if err != nil {
		t.Fatalf("the report does not verify: %v", err)
	}
	if len(rep.Consents) != 1 || rep.Consents[0].Session != shown.SessionId || rep.Consents[0].Serial != serial {
		t.Fatalf("consents: %+v", rep.Consents)
	}
	st, err := bidopening.ParseStatement(rep.Consents[0].Statement)
	if err != nil || len(st.Envelopes) != 2 {
		t.Fatalf("statement: %v %v", st, err)
	}
	// The statement's consent points are the phone's: T1 = d1⁻¹·C1 of each envelope.
	for i, reg := range regs {
		ct, err := cosign.ParseCiphertext(reg.Ciphertext, cosign.DetectEncoding(reg.Ciphertext))
		if err != nil {
			t.Fatal(err)
		}
		t1 := entry.Share.ConsentPoint(&ct.C1)
		if st.Envelopes[i].ID != reg.EnvelopeId || st.Envelopes[i].T1SHA256 != bidopening.T1Hash(&t1) {
			t.Fatalf("statement envelope %d: %+v", i, st.Envelopes[i])
		}
	}
}
