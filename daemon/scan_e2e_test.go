package daemon_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cms"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/daemon/scan"
	"google.golang.org/grpc/codes"
)

// scanAppliance is an appliance whose development CLI certificate is both the review desk
// and a business system allowed ScanService.
func scanAppliance(t *testing.T) *certAppl {
	return certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService"}}}
	})
}

// rp connects as the business system (the development CLI client certificate).
func (a *appliance) rp() hufuv1.ScanServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "rp-0001"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewScanServiceClient(conn.ClientConn())
}

// cosignDigests runs the phone's half of signing for pinned digests through the session.
func cosignDigests(t *testing.T, phone hufuv1.PhoneScanServiceClient, pk *phoneKey, session string, digests [][cosign.ScalarSize]byte) ([][]byte, error) {
	t.Helper()
	var raws [][]byte
	var sessions []*cosign.SignSession
	for _, e := range digests {
		ss, req, err := pk.share.StartSign(rand.Reader, &pk.public, &e)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := req.MarshalBinary()
		raws, sessions = append(raws, raw), append(sessions, ss)
	}
	resp, err := phone.Cosign(bg, &hufuv1.CosignRequest{SessionId: session, Credential: pk.cred, SignRequests: raws})
	if err != nil {
		return nil, err
	}
	var sigs [][]byte
	for i, it := range resp.Items {
		if it.ErrorCode != 0 {
			t.Fatalf("item %d: %s", i, it.ErrorMessage)
		}
		var r cosign.SignResponse
		if err := r.UnmarshalBinary(it.Result); err != nil {
			t.Fatal(err)
		}
		sig, err := sessions[i].Finish(&r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := sig.MarshalBinary()
		sigs = append(sigs, b)
	}
	return sigs, nil
}

// answerLogin answers a LOGIN session from the phone, reporting failures instead of ending
// the test (it runs on other goroutines).
func answerLogin(phone hufuv1.PhoneScanServiceClient, pk *phoneKey, serial, id, payload string) error {
	if _, err := phone.Scan(bg, &hufuv1.ScanRequest{QrPayload: payload}); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	chosen, err := phone.Choose(bg, &hufuv1.ChooseRequest{SessionId: id, CertificateSerial: serial})
	if err != nil {
		return fmt.Errorf("choose: %w", err)
	}
	e, err := cosign.Digest(&pk.public, nil, chosen.Challenge)
	if err != nil {
		return err
	}
	ss, req, err := pk.share.StartSign(rand.Reader, &pk.public, &e)
	if err != nil {
		return err
	}
	raw, _ := req.MarshalBinary()
	resp, err := phone.Cosign(bg, &hufuv1.CosignRequest{SessionId: id, Credential: pk.cred, SignRequests: [][]byte{raw}})
	if err != nil {
		return fmt.Errorf("cosign: %w", err)
	}
	var r cosign.SignResponse
	if err := r.UnmarshalBinary(resp.Items[0].Result); err != nil {
		return fmt.Errorf("cosign item: %s: %w", resp.Items[0].ErrorMessage, err)
	}
	sig, err := ss.Finish(&r)
	if err != nil {
		return err
	}
	b, _ := sig.MarshalBinary()
	_, err = phone.Complete(bg, &hufuv1.CompleteRequest{SessionId: id, Signatures: [][]byte{b}})
	return err
}

func TestScanSessions(t *testing.T) {
	a := scanAppliance(t)
	desk, rp := a.desk(), a.rp()
	p := newApplicant(t, a, phone, "scan-dev-01", "key-scan-0001")
	serial := p.issue(desk)
	cert, roots, _, _ := p.download(serial)
	phoneScan := hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn())
	keyResp, err := phoneScan.GetQrKey(bg, &hufuv1.GetQrKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(keyResp.PublicKeyPem))
	qrKey, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	create := func(req *hufuv1.CreateSessionRequest) *hufuv1.ScanSession {
		t.Helper()
		resp, err := rp.CreateSession(bg, req)
		if err != nil {
			t.Fatalf("create %v: %v", req.Kind, err)
		}
		// The phone checks the appliance's signature before trusting the code.
		if _, _, _, err := scan.VerifyQR(qrKey.(*ecdsa.PublicKey), resp.Session.QrPayload); err != nil {
			t.Fatalf("QR payload does not verify: %v", err)
		}
		return resp.Session
	}
	answerChallenge := func(session *hufuv1.ScanSession) *hufuv1.ScanSession {
		t.Helper()
		scanned, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: session.QrPayload})
		if err != nil || len(scanned.Candidates) != 1 || scanned.Candidates[0].Serial != serial || scanned.Candidates[0].Refusal != "" {
			t.Fatalf("scan: %v %v", scanned, err)
		}
		chosen, err := phoneScan.Choose(bg, &hufuv1.ChooseRequest{SessionId: session.Id, CertificateSerial: serial})
		if err != nil {
			t.Fatalf("choose: %v", err)
		}
		e, err := cosign.Digest(&p.key.public, nil, chosen.Challenge)
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := cosignDigests(t, phoneScan, p.key, session.Id, [][cosign.ScalarSize]byte{e})
		if err != nil {
			t.Fatalf("cosign: %v", err)
		}
		if _, err := phoneScan.Complete(bg, &hufuv1.CompleteRequest{SessionId: session.Id, Signatures: sigs}); err != nil {
			t.Fatalf("complete: %v", err)
		}
		got, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: session.Id})
		if err != nil || got.Session.State != hufuv1.SessionState_SESSION_STATE_COMPLETED {
			t.Fatalf("session after completion: %v %v", got, err)
		}
		r := got.Session.Result
		if !sm2.VerifyASN1WithSM2(cert.PublicKey.(*ecdsa.PublicKey), nil, r.Challenge, r.ChallengeSignature) {
			t.Fatal("the assertion does not verify under the certificate")
		}
		return got.Session
	}

	// Bad requests name the field.
	_, err = rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "bind-bad-1", Kind: hufuv1.SessionKind_SESSION_KIND_BIND,
		PlatformId: "demo", Reference: "unit-42", Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "110105194912310021"}})
	wantCode(t, err, codes.InvalidArgument, "subject.id_number")
	_, err = rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "sign-bad-1", Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, Reference: "unit-42",
		PlatformId: "demo", Documents: []*hufuv1.Document{{Name: "投标函.pdf", Sm3: []byte{1, 2}}}})
	wantCode(t, err, codes.InvalidArgument, "documents[0].sm3")
	_, err = rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "kind-bad-1", PlatformId: "demo"})
	wantCode(t, err, codes.InvalidArgument, "kind")
	// Users cannot call the business-system side.
	_, err = hufuv1.NewScanServiceClient(p.conn.ClientConn()).CreateSession(bg, &hufuv1.CreateSessionRequest{})
	if statusCode(err) == codes.OK {
		t.Fatal("a user created a scan session")
	}

	// LOGIN before BIND: the certificate is not bound to this system.
	login := create(&hufuv1.CreateSessionRequest{RequestId: "login-00", Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN, PlatformId: "demo"})
	if _, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: login.QrPayload}); err != nil {
		t.Fatal(err)
	}
	_, err = phoneScan.Choose(bg, &hufuv1.ChooseRequest{SessionId: login.Id, CertificateSerial: serial})
	wantCode(t, err, codes.FailedPrecondition, "")

	// BIND: a wrong identity is refused; the right one binds.
	wrong := create(&hufuv1.CreateSessionRequest{RequestId: "bind-wrong-1", Kind: hufuv1.SessionKind_SESSION_KIND_BIND, PlatformId: "demo",
		Reference: "unit-41", Subject: &hufuv1.BindSubject{PersonName: "李四", IdNumber: "11010519491231002X"}})
	if _, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: wrong.QrPayload}); err != nil {
		t.Fatal(err)
	}
	_, err = phoneScan.Choose(bg, &hufuv1.ChooseRequest{SessionId: wrong.Id, CertificateSerial: serial})
	wantCode(t, err, codes.FailedPrecondition, "")
	if _, err := phoneScan.Decline(bg, &hufuv1.DeclineRequest{SessionId: wrong.Id, Reason: "不是我的单位"}); err != nil {
		t.Fatal(err)
	}
	declined, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: wrong.Id})
	if err != nil || declined.Session.State != hufuv1.SessionState_SESSION_STATE_DECLINED || declined.Session.Reason != "不是我的单位" {
		t.Fatalf("declined session: %v %v", declined, err)
	}

	bind := create(&hufuv1.CreateSessionRequest{RequestId: "bind-right-1", Kind: hufuv1.SessionKind_SESSION_KIND_BIND, PlatformId: "demo",
		Reference: "unit-42", Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "11010519491231002X"}})
	// The system follows the session as it moves.
	watch, err := rp.WatchSession(bg, &hufuv1.WatchSessionRequest{SessionId: bind.Id})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.Session.State != hufuv1.SessionState_SESSION_STATE_CREATED {
		t.Fatalf("watch: %v %v", first, err)
	}
	done := answerChallenge(bind)
	if done.Result.Binding == nil || done.Result.Binding.Reference != "unit-42" || done.Result.Binding.CertificateSerial != serial {
		t.Fatalf("binding: %v", done.Result)
	}
	var states []hufuv1.SessionState
	for {
		m, err := watch.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		states = append(states, m.Session.State)
	}
	if len(states) == 0 || states[len(states)-1] != hufuv1.SessionState_SESSION_STATE_COMPLETED {
		t.Fatalf("watched states: %v", states)
	}
	// A second scan of the same code is refused; so is a forged one.
	_, err = phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: bind.QrPayload})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: strings.Replace(bind.QrPayload, bind.Id, login.Id, 1)})
	wantCode(t, err, codes.InvalidArgument, "qr_payload")
	resolved, err := rp.ResolveCertificate(bg, &hufuv1.ResolveCertificateRequest{CertificateSerial: serial})
	if err != nil || resolved.Binding.Reference != "unit-42" {
		t.Fatalf("resolve: %v %v", resolved, err)
	}

	// The person sees the binding too.
	mine, err := phoneScan.ListMyBindings(bg, &hufuv1.ListMyBindingsRequest{})
	if err != nil || len(mine.Bindings) != 1 || mine.Bindings[0].System != devpki.CLIClientName || mine.Bindings[0].Reference != "unit-42" {
		t.Fatalf("the person's bindings: %v %v", mine, err)
	}

	// LOGIN with the bound certificate: the assertion carries the binding.
	login = create(&hufuv1.CreateSessionRequest{RequestId: "login-01", Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN, PlatformId: "demo"})
	done = answerChallenge(login)
	if done.Result.Binding.GetReference() != "unit-42" || len(done.Result.Chain) != 2 {
		t.Fatalf("login result: %v", done.Result)
	}

	// Concurrent sessions of one system, answered at once from one phone.
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			created, err := rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: fmt.Sprintf("login-par-%02d", i),
				Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN, PlatformId: "demo"})
			if err == nil {
				err = answerLogin(phoneScan, p.key, serial, created.Session.Id, created.Session.QrPayload)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent login: %v", err)
		}
	}

	// SIGN: the appliance pins e of each document's signed attributes; the system gets a
	// detached CMS per document that verifies with the document's digest.
	docs := [][]byte{[]byte("投标函：本公司参加某某项目投标"), []byte("报价一览表")}
	var reg []*hufuv1.Document
	for i, d := range docs {
		h := sm3.Sum(d)
		reg = append(reg, &hufuv1.Document{Name: []string{"投标函.pdf", "报价一览表.pdf"}[i], Sm3: h[:]})
	}
	_, err = rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "sign-000", Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, PlatformId: "demo", Documents: reg})
	wantCode(t, err, codes.InvalidArgument, "reference")
	// A certificate bound to another unit of the system cannot answer for this one.
	otherUnit := create(&hufuv1.CreateSessionRequest{RequestId: "sign-002", Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, PlatformId: "demo",
		Reference: "unit-99", Documents: reg})
	if _, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: otherUnit.QrPayload}); err != nil {
		t.Fatal(err)
	}
	_, err = phoneScan.Choose(bg, &hufuv1.ChooseRequest{SessionId: otherUnit.Id, CertificateSerial: serial})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "sign-003", Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, PlatformId: "demo",
		Reference: "dept/unit-42", Documents: reg})
	wantCode(t, err, codes.InvalidArgument, "reference")
	sign := create(&hufuv1.CreateSessionRequest{RequestId: "sign-001", Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, PlatformId: "demo",
		Reference: "unit-42", Documents: reg})
	scanned, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: sign.QrPayload})
	if err != nil || len(scanned.Documents) != 2 || scanned.Documents[0].Name != "投标函.pdf" {
		t.Fatalf("scan sign: %v %v", scanned, err)
	}
	chosen, err := phoneScan.Choose(bg, &hufuv1.ChooseRequest{SessionId: sign.Id, CertificateSerial: serial})
	if err != nil || len(chosen.SignedAttributes) != 2 {
		t.Fatalf("choose sign: %v %v", chosen, err)
	}
	var digests [][cosign.ScalarSize]byte
	for i, attrs := range chosen.SignedAttributes {
		// The phone checks the attributes carry the digest it was shown, and computes e itself.
		if _, err := cms.CheckSignedAttributes(attrs, scanned.Documents[i].Sm3); err != nil {
			t.Fatalf("attributes %d: %v", i, err)
		}
		e, err := cms.Digest(cert.PublicKey.(*ecdsa.PublicKey), attrs)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, e)
	}
	// Any other digest is refused in this session.
	other := digests[0]
	other[0] ^= 1
	_, err = cosignDigests(t, phoneScan, p.key, sign.Id, [][cosign.ScalarSize]byte{other, digests[1]})
	wantCode(t, err, codes.InvalidArgument, "sign_requests[0].e")
	sigs, err := cosignDigests(t, phoneScan, p.key, sign.Id, digests)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phoneScan.Complete(bg, &hufuv1.CompleteRequest{SessionId: sign.Id, Signatures: sigs}); err != nil {
		t.Fatalf("complete sign: %v", err)
	}
	got, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: sign.Id})
	if err != nil || len(got.Session.Result.GetSignatures()) != 2 {
		t.Fatalf("signed session: %v %v", got, err)
	}
	for i, sd := range got.Session.Result.Signatures {
		signer, err := cms.VerifyDetached(sd.Cms, reg[i].Sm3, roots)
		if err != nil || signer.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			t.Fatalf("CMS %d: %v", i, err)
		}
	}
	// The raw signature is an ordinary SM2 signature on the DER attributes: OpenSSL verifies
	// it under the certificate (standard signer ID).
	for _, sd := range got.Session.Result.Signatures {
		var sig cosign.Signature
		if err := sig.UnmarshalBinary(sd.Signature); err != nil {
			t.Fatal(err)
		}
		verifyWithOpenSSL(t, got.Session.Result.Certificate, sd.SignedAttributes, sig.ASN1())
	}
	if _, err := smx509.ParseCertificate(got.Session.Result.Certificate); err != nil {
		t.Fatal(err)
	}

	// The person removes the binding: the system can no longer log them in with it.
	if _, err := phoneScan.RemoveMyBinding(bg, &hufuv1.RemoveMyBindingRequest{System: devpki.CLIClientName, BindingId: mine.Bindings[0].Id}); err != nil {
		t.Fatal(err)
	}
	_, err = rp.ResolveCertificate(bg, &hufuv1.ResolveCertificateRequest{CertificateSerial: serial})
	wantCode(t, err, codes.NotFound, "")

	// An expired code cannot be scanned.
	late := create(&hufuv1.CreateSessionRequest{RequestId: "login-late", Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN, PlatformId: "demo", TtlSeconds: 30})
	a.clock.Advance(31 * time.Second)
	_, err = phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: late.QrPayload})
	wantCode(t, err, codes.FailedPrecondition, "")
	expired, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: late.Id})
	if err != nil || expired.Session.State != hufuv1.SessionState_SESSION_STATE_EXPIRED || expired.Session.QrPayload != "" {
		t.Fatalf("expired session: %v %v", expired, err)
	}

	// AUTH: consent releases the verified identity, signed by the appliance.
	auth := create(&hufuv1.CreateSessionRequest{RequestId: "auth-001", Kind: hufuv1.SessionKind_SESSION_KIND_AUTH, PlatformId: "demo"})
	preview, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: auth.QrPayload})
	if err != nil || !strings.Contains(string(preview.ReleasePreview), "张三") {
		t.Fatalf("auth preview: %v %v", preview, err)
	}
	if _, err := phoneScan.Consent(bg, &hufuv1.ConsentRequest{SessionId: auth.Id}); err != nil {
		t.Fatal(err)
	}
	released, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: auth.Id})
	if err != nil || len(released.Session.Result.GetReleased()) == 0 {
		t.Fatalf("released: %v %v", released, err)
	}
}

// TestScanEnterpriseStaffSealAndBidFile: a staff member answers with the enterprise
// certificate through a delegated pair — BIND by the enterprise's name and USCC, SIGN with
// the enterprise's seal, GENERATE a bid file enveloped to the enterprise certificate and
// opened through two-party decryption — and another business system sees none of it.
func TestScanEnterpriseStaffSealAndBidFile(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{
			{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService"}},
			// A name that extends the first's: index values must not collide across systems.
			{Name: devpki.CLIClientName + ".x", Services: []string{"hufu.v1.ScanService"}},
		}
	})
	desk, rp := a.desk(), a.rp()
	boss := newMember(t, a, "13800138061", "scan-admin-01")
	staff, staffKS := keystoreMember(t, a, "13800138062", "scan-staff-01")
	entSerial := boss.claimAndPay(desk, usccA, "福州示范科技有限公司")
	entCert, roots, _, _ := boss.download(entSerial)
	inv, err := boss.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	if err != nil {
		t.Fatal(err)
	}
	app, err := staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-scan-1", Invite: inv.Payload})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boss.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RegisterDelegationDevice(bg, staff.conn, staffKS, usccA); err != nil {
		t.Fatal(err)
	}
	// The administrator's device holds the keys' primary shares in the test's phoneKeys; put
	// them in a keystore for the SDK's grant.
	bossKS := saveEnterpriseKeys(t, boss)
	fp, err := client.ThisDeviceFingerprint(staffKS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.GrantDelegation(bg, boss.conn, bossKS, usccA, staff.userID, fp, client.PINCredential("654321")); err != nil {
		t.Fatalf("grant: %v", err)
	}
	entry, err := client.AcceptDelegation(bg, staff.conn, staffKS, usccA, "135791")
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	staffKey := &phoneKey{id: entry.ID, public: entry.Public, share: entry.Share, cred: client.PINCredential("135791")}
	seals := hufuv1.NewSealServiceClient(boss.conn.ClientConn())
	official, err := seals.CreateSeal(bg, &hufuv1.CreateSealRequest{RequestId: "seal-scan-1", EnterpriseUscc: usccA, Name: "公章",
		Type: hufuv1.SealType_SEAL_TYPE_OFFICIAL, Image: pngBytes(t), CertificateSerial: entSerial})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seals.AuthoriseSeal(bg, &hufuv1.AuthoriseSealRequest{SealId: official.Seal.Id, UserId: staff.userID}); err != nil {
		t.Fatal(err)
	}
	phoneScan := hufuv1.NewPhoneScanServiceClient(staff.conn.ClientConn())
	scanAndChoose := func(req *hufuv1.CreateSessionRequest, seal string) (*hufuv1.ScanSession, *hufuv1.ScanResponse, *hufuv1.ChooseResponse) {
		t.Helper()
		created, err := rp.CreateSession(bg, req)
		if err != nil {
			t.Fatal(err)
		}
		shown, err := phoneScan.Scan(bg, &hufuv1.ScanRequest{QrPayload: created.Session.QrPayload})
		if err != nil || len(shown.Candidates) != 1 || shown.Candidates[0].Serial != entSerial || shown.Candidates[0].Uscc != usccA {
			t.Fatalf("staff candidates: %v %v", shown, err)
		}
		chosen, err := phoneScan.Choose(bg, &hufuv1.ChooseRequest{SessionId: created.Session.Id, CertificateSerial: entSerial, SealId: seal})
		if err != nil {
			t.Fatalf("choose: %v", err)
		}
		return created.Session, shown, chosen
	}
	finish := func(session *hufuv1.ScanSession, digests [][cosign.ScalarSize]byte) *hufuv1.SessionResult {
		t.Helper()
		sigs, err := cosignDigests(t, phoneScan, staffKey, session.Id, digests)
		if err != nil {
			t.Fatalf("cosign: %v", err)
		}
		if _, err := phoneScan.Complete(bg, &hufuv1.CompleteRequest{SessionId: session.Id, Signatures: sigs}); err != nil {
			t.Fatalf("complete: %v", err)
		}
		got, err := rp.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: session.Id})
		if err != nil || got.Session.State != hufuv1.SessionState_SESSION_STATE_COMPLETED {
			t.Fatalf("session: %v %v", got, err)
		}
		return got.Session.Result
	}

	// BIND the system's unit to the enterprise by name (full-width variant) and USCC.
	bind, _, chosen := scanAndChoose(&hufuv1.CreateSessionRequest{RequestId: "bind-ent-1", Kind: hufuv1.SessionKind_SESSION_KIND_BIND,
		PlatformId: "demo", Reference: "unit-7", Subject: &hufuv1.BindSubject{EnterpriseName: "福州示范科技有限公司 ", Uscc: usccA}}, "")
	e, err := cosign.Digest(&staffKey.public, nil, chosen.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	if r := finish(bind, [][cosign.ScalarSize]byte{e}); r.Binding.GetUscc() != usccA || !r.Delegated || len(r.AnsweredByUser) != 32 || strings.Contains(r.AnsweredByUser, staff.userID) {
		t.Fatalf("enterprise binding: %v", r)
	}

	// LOGIN as the enterprise through the staff pair.
	login, _, chosen := scanAndChoose(&hufuv1.CreateSessionRequest{RequestId: "login-ent-1", Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN,
		PlatformId: "demo"}, "")
	if e, err = cosign.Digest(&staffKey.public, nil, chosen.Challenge); err != nil {
		t.Fatal(err)
	}
	if r := finish(login, [][cosign.ScalarSize]byte{e}); r.Binding.GetReference() != "unit-7" ||
		!sm2.VerifyASN1WithSM2(entCert.PublicKey.(*ecdsa.PublicKey), nil, r.Challenge, r.ChallengeSignature) {
		t.Fatalf("enterprise login: %v", r)
	}

	// SIGN with the enterprise's seal: the CMS verifies under the enterprise certificate and
	// the result carries the seal's image.
	content := []byte("投标文件正文")
	h := sm3.Sum(content)
	sign, shown, chosen := scanAndChoose(&hufuv1.CreateSessionRequest{RequestId: "sign-ent-1", Kind: hufuv1.SessionKind_SESSION_KIND_SIGN,
		PlatformId: "demo", Reference: "unit-7", WithSeal: true, Documents: []*hufuv1.Document{{Name: "投标文件.pdf", Sm3: h[:]}}}, official.Seal.Id)
	if _, err := cms.CheckSignedAttributes(chosen.SignedAttributes[0], shown.Documents[0].Sm3); err != nil {
		t.Fatal(err)
	}
	e, err = cms.Digest(entCert.PublicKey.(*ecdsa.PublicKey), chosen.SignedAttributes[0])
	if err != nil {
		t.Fatal(err)
	}
	r := finish(sign, [][cosign.ScalarSize]byte{e})
	if _, err := cms.VerifyDetached(r.Signatures[0].Cms, h[:], roots); err != nil {
		t.Fatalf("enterprise CMS: %v", err)
	}
	if r.Seal.GetSealId() != official.Seal.Id || len(r.Seal.GetImage()) == 0 {
		t.Fatalf("seal appearance: %v", r.Seal)
	}

	// GENERATE: the system envelopes the bid file to the enterprise's encryption certificate,
	// the pair of the signing certificate that answered; the staff member's pair of the
	// encryption key opens it through two-party decryption; C1 is what a bid opening will
	// register. The staff pair of the signing key does not decrypt.
	gen, _, chosen := scanAndChoose(&hufuv1.CreateSessionRequest{RequestId: "gen-ent-1", Kind: hufuv1.SessionKind_SESSION_KIND_GENERATE,
		PlatformId: "demo", Reference: "unit-7", Documents: []*hufuv1.Document{{Name: "投标文件.pdf", Sm3: h[:]}}}, "")
	e, err = cms.Digest(entCert.PublicKey.(*ecdsa.PublicKey), chosen.SignedAttributes[0])
	if err != nil {
		t.Fatal(err)
	}
	r = finish(gen, [][cosign.ScalarSize]byte{e})
	encCert, _, _, _ := boss.download(boss.encSerial)
	if !bytes.Equal(r.Certificate, entCert.Raw) || !bytes.Equal(r.EncryptionCertificate, encCert.Raw) {
		t.Fatal("GENERATE answered with the enterprise signing certificate but did not give its encryption certificate to envelope to")
	}
	to, err := smx509.ParseCertificate(r.EncryptionCertificate)
	if err != nil {
		t.Fatal(err)
	}
	enveloped, err := cms.Envelope(content, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cms.KeyTransportC1(enveloped, to); err != nil {
		t.Fatal(err)
	}
	signingPair, err := client.OpenKey(bg, staff.conn, staffKS, entry.ID, "135791")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cms.OpenEnvelope(enveloped, to, func(kt []byte) ([]byte, error) {
		return signingPair.Decrypt(nil, kt, &cosign.DecrypterOpts{Encoding: cosign.ASN1})
	})
	if statusCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("the staff pair of the enterprise signing key decrypted: %v", err)
	}
	key, err := client.OpenKey(bg, staff.conn, staffKS, boss.enc.id, "135791")
	if err != nil {
		t.Fatalf("the staff member's pair of the enterprise encryption key: %v", err)
	}
	opened, err := cms.OpenEnvelope(enveloped, to, func(kt []byte) ([]byte, error) {
		return key.Decrypt(nil, kt, &cosign.DecrypterOpts{Encoding: cosign.ASN1})
	})
	if err != nil || string(opened) != string(content) {
		t.Fatalf("open the bid file: %q %v", opened, err)
	}

	// Another business system sees none of this system's sessions or bindings.
	tls := filepath.Join(a.cfg.DataDir, "tls")
	ca, caKey, err := devpki.LoadCA(devpki.FilesIn(tls))
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := filepath.Join(t.TempDir(), "other.pem"), filepath.Join(t.TempDir(), "other-key.pem")
	if _, _, err := devpki.IssueClient(otherCert, otherKey, devpki.CLIClientName+".x", ca, caKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	oc, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: otherCert, ClientKeyFile: otherKey, DeviceID: "rp-0002"})
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	other := hufuv1.NewScanServiceClient(oc.ClientConn())
	_, err = other.GetSession(bg, &hufuv1.GetSessionRequest{SessionId: sign.Id})
	wantCode(t, err, codes.NotFound, "")
	_, err = other.ResolveCertificate(bg, &hufuv1.ResolveCertificateRequest{CertificateSerial: entSerial})
	wantCode(t, err, codes.NotFound, "")
	if bs, err := other.ListBindings(bg, &hufuv1.ListBindingsRequest{}); err != nil || len(bs.Bindings) != 0 {
		t.Fatalf("other system's bindings: %v %v", bs, err)
	}
	theirs, err := other.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "login-0001", Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN, PlatformId: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "x.login-0001", Kind: hufuv1.SessionKind_SESSION_KIND_LOGIN, PlatformId: "demo"})
	if err != nil || ours.Session.Id == theirs.Session.Id {
		t.Fatalf("a request id reached another system's session: %v %v", ours, err)
	}
	_, err = rp.ResolveCertificate(bg, &hufuv1.ResolveCertificateRequest{CertificateSerial: "x." + entSerial})
	wantCode(t, err, codes.NotFound, "")
	// The other system may not use the review desk.
	_, err = hufuv1.NewReviewServiceClient(oc.ClientConn()).ListReviews(bg, &hufuv1.ListReviewsRequest{})
	wantCode(t, err, codes.PermissionDenied, "")
}
