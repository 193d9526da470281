package client_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/protobuf/proto"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/scan"
)

var updateQRVector = flag.Bool("update-qr-vector", false, "write testdata/qr_vector.json from a payload the daemon makes")

// systemConn connects as a business system with the development CLI client certificate,
// which the default configuration allows hufu.v1.ScanService and the review desk.
func (a *appliance) systemConn() *client.Conn {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.Addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "rp-0001"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return conn
}

// issuedPair is a certificate pair issued with the SDK: the signing certificate on the key
// the test made, the encryption certificate on a second key made for it under the same PIN.
type issuedPair struct {
	serial, encSerial, encKeyID string
	cert, encCert               *smx509.Certificate
	roots                       *smx509.CertPool
}

func issuePair(t *testing.T, p *phone, sys *client.Conn, keyID string) issuedPair {
	t.Helper()
	k := mustOpen(t, p, keyID)
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	encEntry := mustCreate(t, p, "encryption key of "+keyID)
	encCSR, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, mustOpen(t, p, encEntry.ID))
	if err != nil {
		t.Fatal(err)
	}
	letter := []byte("授权书：本人授权申请个人数字证书。")
	sig, err := k.Sign(rand.Reader, letter, &cosign.SignerOpts{})
	if err != nil {
		t.Fatal(err)
	}
	certs := hufuv1.NewCertificateServiceClient(p.conn.ClientConn())
	applied, err := certs.ApplyCertificate(bg, &hufuv1.ApplyCertificateRequest{RequestId: "apply-" + keyID, KeyId: keyID, CaId: "hufu-ca",
		ValidityYears: 2, Platforms: []string{"demo"}, Csr: csr, EncryptionKeyId: encEntry.ID, EncryptionCsr: encCSR,
		Authorisation: &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Online{Online: &hufuv1.SignedLetter{Letter: letter, Signature: sig}}}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if _, err := hufuv1.NewReviewServiceClient(sys.ClientConn()).ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: applied.Order.Id, Note: "ok"}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	paid, err := certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: applied.Order.Id, Method: "dev", IdempotencyKey: "pay-" + applied.Order.Id})
	if err != nil {
		t.Fatalf("pay: %v", err)
	}
	dl, err := certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: paid.Certificate.Serial, Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(dl.CertificateData)
	if err != nil {
		t.Fatal(err)
	}
	root, err := smx509.ParseCertificate(dl.Chain[len(dl.Chain)-1])
	if err != nil {
		t.Fatal(err)
	}
	roots := smx509.NewCertPool()
	roots.AddCert(root)
	encCert, err := smx509.ParseCertificate(dl.PairCertificateData)
	if err != nil {
		t.Fatal(err)
	}
	return issuedPair{serial: paid.Certificate.Serial, cert: cert, roots: roots, encSerial: paid.Order.EncryptionSerial, encKeyID: encEntry.ID, encCert: encCert}
}

// TestScanSessionsSDK plays every kind of scan session with the SDK only: the business
// system's side with the client certificate, the phone's with ScanSession and AnswerSession.
func TestScanSessionsSDK(t *testing.T) {
	a := startAppliance(t, nil)
	sys := a.systemConn()
	rp := hufuv1.NewScanServiceClient(sys.ClientConn())
	p := a.newPhone("13800138000", "phone-scan-01")
	entry := mustCreate(t, p, "scan")
	pair := issuePair(t, p, sys, entry.ID)
	serial, cert, roots := pair.serial, pair.cert, pair.roots

	qrResp, err := hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn()).GetQrKey(bg, &hufuv1.GetQrKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := client.ParseScanKey(qrResp.PublicKeyPem)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	create := func(req *hufuv1.CreateSessionRequest) *hufuv1.ScanSession {
		t.Helper()
		n++
		req.RequestId, req.PlatformId = fmt.Sprintf("sdk-request-%d", n), "demo"
		resp, err := rp.CreateSession(bg, req)
		if err != nil {
			t.Fatalf("create %v: %v", req.Kind, err)
		}
		return resp.Session
	}
	result := func(id string, want hufuv1.SessionState) *hufuv1.ScanSession {
		t.Helper()
		got, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: id})
		if err != nil || got.Session.State != want {
			t.Fatalf("session %s: %v %v, want %v", id, got, err, want)
		}
		return got.Session
	}
	scanAndAnswer := func(s *hufuv1.ScanSession) *hufuv1.ScanSession {
		t.Helper()
		shown, err := client.ScanSession(bg, p.conn, s.QrPayload, pinned)
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		if err := client.AnswerSession(bg, p.conn, p.ks, s.Id, serial, "", pin, shown); err != nil {
			t.Fatalf("answer: %v", err)
		}
		return result(s.Id, hufuv1.SessionState_SESSION_STATE_COMPLETED)
	}

	t.Run("qr payload", func(t *testing.T) {
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN})
		// The SDK's copy of the format agrees with the daemon's on the daemon's payload.
		qr, err := client.VerifyQR(pinned, s.QrPayload)
		id, nonce, addr, derr := scan.VerifyQR(pinned, s.QrPayload)
		if err != nil || derr != nil || qr.SessionID != s.Id || qr.SessionID != id || qr.Nonce != nonce || qr.Address != addr {
			t.Fatalf("VerifyQR: %+v %v; daemon: %s %s %s %v", qr, err, id, nonce, addr, derr)
		}
		if *updateQRVector {
			writeQRVector(t, qrResp.PublicKeyPem, s.QrPayload, qr)
		}
		other := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN})
		sigAt := strings.LastIndexByte(s.QrPayload, '.')
		for _, tt := range []struct{ name, payload string }{
			{"another session's id", strings.Replace(s.QrPayload, s.Id, other.Id, 1)},
			{"another address", strings.Replace(s.QrPayload, "."+addr+".", ".evil.example:443.", 1)},
			{"another code's signature", s.QrPayload[:sigAt] + other.QrPayload[strings.LastIndexByte(other.QrPayload, '.'):]},
			{"no signature", s.QrPayload[:sigAt]},
			{"another prefix", "HUFU2" + strings.TrimPrefix(s.QrPayload, "HUFU1")},
			{"empty", ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := client.ScanSession(bg, p.conn, tt.payload, pinned); !errors.Is(err, client.ErrQRCode) {
					t.Fatalf("got %v, want ErrQRCode", err)
				}
				if _, _, _, err := scan.VerifyQR(pinned, tt.payload); err == nil {
					t.Fatal("the daemon accepts it")
				}
			})
		}
		// Another appliance's key (a swapped code) is refused before anything is sent: the
		// session stays unscanned.
		otherKey, _ := ecdsa.GenerateKey(pinned.Curve, rand.Reader)
		if _, err := client.ScanSession(bg, p.conn, s.QrPayload, &otherKey.PublicKey); !errors.Is(err, client.ErrQRCode) {
			t.Fatalf("got %v, want ErrQRCode", err)
		}
		result(s.Id, hufuv1.SessionState_SESSION_STATE_CREATED)
	})

	t.Run("bind", func(t *testing.T) {
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_BIND, Reference: "user-7",
			Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "11010519491231002X"}})
		done := scanAndAnswer(s)
		if b := done.Result.Binding; b == nil || b.Reference != "user-7" || b.CertificateSerial != serial {
			t.Fatalf("binding: %v", done.Result.Binding)
		}
		if _, err := client.VerifyLoginAssertion(done.Result, roots, s.Id); err != nil {
			t.Fatalf("bind assertion: %v", err)
		}
	})

	t.Run("login", func(t *testing.T) {
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN})
		done := scanAndAnswer(s)
		got, err := client.VerifyLoginAssertion(done.Result, roots, s.Id)
		if err != nil || got.SerialNumber.Cmp(cert.SerialNumber) != 0 || done.Result.Binding.GetReference() != "user-7" {
			t.Fatalf("login assertion: %v %v", got, err)
		}
		// Not for another session, nor with another root.
		if _, err := client.VerifyLoginAssertion(done.Result, roots, strings.Repeat("0", 20)); !errors.Is(err, client.ErrAssertion) {
			t.Fatalf("another session: %v", err)
		}
		if _, err := client.VerifyLoginAssertion(done.Result, smx509.NewCertPool(), s.Id); !errors.Is(err, client.ErrAssertion) {
			t.Fatalf("no root: %v", err)
		}
		tampered := proto.Clone(done.Result).(*hufuv1.SessionResult)
		tampered.Challenge = bytes.Replace(done.Result.Challenge, []byte("LOGIN"), []byte("BIND"), 1)
		if _, err := client.VerifyLoginAssertion(tampered, roots, s.Id); !errors.Is(err, client.ErrAssertion) {
			t.Fatalf("tampered challenge: %v", err)
		}
	})

	docs := []*hufuv1.Document{doc("投标函.pdf", "投标函：本公司参加某某项目投标"), doc("报价一览表.pdf", "报价一览表")}

	t.Run("sign", func(t *testing.T) {
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, Reference: "user-7", Documents: docs})
		done := scanAndAnswer(s)
		if len(done.Result.Signatures) != 2 {
			t.Fatalf("signatures: %v", done.Result.Signatures)
		}
		for i, sd := range done.Result.Signatures {
			signer, err := client.VerifySignedDocument(sd, roots)
			if err != nil || signer.SerialNumber.Cmp(cert.SerialNumber) != 0 || !bytes.Equal(sd.Sm3, docs[i].Sm3) {
				t.Fatalf("document %d: %v", i, err)
			}
		}
		// The CMS is for its own document only.
		swapped := &hufuv1.SignedDocument{Name: "x", Sm3: docs[1].Sm3, Cms: done.Result.Signatures[0].Cms}
		if _, err := client.VerifySignedDocument(swapped, roots); !errors.Is(err, client.ErrAssertion) {
			t.Fatalf("CMS of another document: %v", err)
		}
	})

	t.Run("generate", func(t *testing.T) {
		bid := []byte("投标文件：报价 1,234,567.89 元")
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_GENERATE, Reference: "user-7", Documents: []*hufuv1.Document{doc("投标文件.hbf", string(bid))}})
		done := scanAndAnswer(s)
		signer, err := client.VerifySignedDocument(done.Result.Signatures[0], roots)
		if err != nil {
			t.Fatal(err)
		}
		// The system envelopes the bid to the pair's encryption certificate, which the
		// result names; the signing key cannot open it, the encryption key does.
		to, err := smx509.ParseCertificate(done.Result.EncryptionCertificate)
		if err != nil || signer.SerialNumber.Cmp(cert.SerialNumber) != 0 || to.SerialNumber.Cmp(pair.encCert.SerialNumber) != 0 {
			t.Fatalf("GENERATE result: envelope certificate %v, signer %v", err, signer.SerialNumber)
		}
		env, c1, err := client.EnvelopeBidFile(bid, to)
		if err != nil || len(c1) != cosign.PointSize || c1[0] != 4 {
			t.Fatalf("envelope: %x %v", c1, err)
		}
		if _, err := client.OpenBidFile(bg, p.conn, p.ks, entry.ID, pin, env); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("opening the bid file with the signing key: %v", err)
		}
		got, err := client.OpenBidFile(bg, p.conn, p.ks, pair.encKeyID, pin, env)
		if err != nil || !bytes.Equal(got, bid) {
			t.Fatalf("open bid file: %q %v", got, err)
		}
		// The decryption went through the appliance: the encryption key's usage record
		// carries C1's digest.
		if !usageHas(t, p, pair.encKeyID, "decrypt") {
			t.Fatal("no decrypt usage recorded")
		}
	})

	t.Run("auth", func(t *testing.T) {
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_AUTH})
		shown, err := client.ScanSession(bg, p.conn, s.QrPayload, pinned)
		if err != nil || !strings.Contains(string(shown.ReleasePreview), "张三") {
			t.Fatalf("scan auth: %v %v", shown, err)
		}
		if err := client.AnswerSession(bg, p.conn, p.ks, s.Id, serial, "", pin, shown); err == nil {
			t.Fatal("answered an AUTH session with a signature")
		}
		if err := client.ConsentSession(bg, p.conn, s.Id); err != nil {
			t.Fatal(err)
		}
		done := result(s.Id, hufuv1.SessionState_SESSION_STATE_COMPLETED)
		keyResp, err := rp.GetScanKey(bg, &hufuv1.GetScanKeyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		scanKey, err := client.ParseScanKey(keyResp.PublicKeyPem)
		if err != nil {
			t.Fatal(err)
		}
		released, err := client.VerifyRelease(done.Result, scanKey, s.Id)
		if err != nil || !bytes.Equal(released, shown.ReleasePreview) {
			t.Fatalf("release: %s %v", released, err)
		}
		forged := proto.Clone(done.Result).(*hufuv1.SessionResult)
		forged.Released = bytes.Replace(done.Result.Released, []byte("张三"), []byte("李四"), 1)
		if _, err := client.VerifyRelease(forged, scanKey, s.Id); !errors.Is(err, client.ErrAssertion) {
			t.Fatalf("forged release: %v", err)
		}
	})

	t.Run("wrong shown digest", func(t *testing.T) {
		s := create(&hufuv1.CreateSessionRequest{Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, Reference: "user-7", Documents: docs})
		shown, err := client.ScanSession(bg, p.conn, s.QrPayload, pinned)
		if err != nil {
			t.Fatal(err)
		}
		before := usageCount(t, p, entry.ID)
		// The person was shown another digest for the second document than the appliance
		// registered (say, a screen that lied): the phone refuses before any cosign.
		shown.Documents[1].Sm3 = bytes.Clone(docs[0].Sm3)
		err = client.AnswerSession(bg, p.conn, p.ks, s.Id, serial, "", pin, shown)
		if !errors.Is(err, client.ErrNotShown) || !strings.Contains(err.Error(), "报价一览表.pdf") {
			t.Fatalf("got %v, want ErrNotShown naming the document", err)
		}
		if after := usageCount(t, p, entry.ID); after != before {
			t.Fatalf("usage records %d → %d: something was cosigned", before, after)
		}
		// The person declines; the system learns why.
		if err := client.DeclineSession(bg, p.conn, s.Id, "the documents differ from what I was shown"); err != nil {
			t.Fatal(err)
		}
		if got := result(s.Id, hufuv1.SessionState_SESSION_STATE_DECLINED); got.Reason != "the documents differ from what I was shown" {
			t.Fatalf("reason %q", got.Reason)
		}
	})
}

func doc(name, content string) *hufuv1.Document {
	h := sm3.Sum([]byte(content))
	return &hufuv1.Document{Name: name, Sm3: h[:]}
}

func usageRecords(t *testing.T, p *phone, keyID string) []*hufuv1.UsageRecord {
	t.Helper()
	resp, err := p.conn.Keys.ListUsage(bg, &hufuv1.ListUsageRequest{KeyId: keyID, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Records
}

func usageCount(t *testing.T, p *phone, keyID string) int { return len(usageRecords(t, p, keyID)) }

func usageHas(t *testing.T, p *phone, keyID, op string) bool {
	for _, r := range usageRecords(t, p, keyID) {
		if r.Operation == op && r.Outcome == "ok" {
			return true
		}
	}
	return false
}

// qrVector is a QR payload made by the daemon, with the scan key that signed it.
type qrVector struct {
	PublicKeyPEM string `json:"public_key_pem"`
	Payload      string `json:"payload"`
	SessionID    string `json:"session_id"`
	Nonce        string `json:"nonce"`
	Address      string `json:"address"`
}

func writeQRVector(t *testing.T, keyPEM, payload string, qr *client.QRCode) {
	b, _ := json.MarshalIndent(qrVector{PublicKeyPEM: keyPEM, Payload: payload, SessionID: qr.SessionID, Nonce: qr.Nonce, Address: qr.Address}, "", "  ")
	if err := os.WriteFile(filepath.Join("testdata", "qr_vector.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
