package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// openingSystem connects as a bid-opening system: the development CLI certificate, or
// another client certificate named name.
func (a *appliance) openingSystem(name string) (hufuv1.OpeningServiceClient, hufuv1.ScanServiceClient) {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	cert, key := filepath.Join(tls, "cli.pem"), filepath.Join(tls, "cli-key.pem")
	if name != devpki.CLIClientName {
		ca, caKey, err := devpki.LoadCA(devpki.FilesIn(tls))
		if err != nil {
			a.t.Fatal(err)
		}
		dir := a.t.TempDir()
		cert, key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
		if _, _, err := devpki.IssueClient(cert, key, name, ca, caKey, time.Now()); err != nil {
			a.t.Fatal(err)
		}
	}
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: cert, ClientKeyFile: key, DeviceID: "bos-0001"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewOpeningServiceClient(conn.ClientConn()), hufuv1.NewScanServiceClient(conn.ClientConn())
}

// bidder is a phone with a certificate whose bids are enveloped to it.
type bidder struct {
	name   string
	phone  hufuv1.PhoneScanServiceClient
	key    *phoneKey
	serial string
	pub    *ecdsa.PublicKey
	conn   *client.Conn
	ks     *keystore.Store // the phone's keystore, where the SDK keeps it
}

// consent answers a DECRYPT code from the phone: check the opening and the envelopes, send
// T1 = d1⁻¹·C1 for each (corrupt: the first envelope's T1 for every envelope), check the
// statement and sign it.
func (b *bidder) consent(t *testing.T, payload string, corrupt bool) error {
	t.Helper()
	shown, err := b.phone.Scan(bg, &hufuv1.ScanRequest{QrPayload: payload})
	if err != nil {
		return err
	}
	var envs []*hufuv1.ConsentEnvelope
	for _, c := range shown.Candidates {
		if c.Serial == b.serial {
			envs = c.Envelopes
		}
	}
	if shown.Opening == nil || len(envs) == 0 {
		t.Fatalf("%s is shown no envelopes of theirs: %v", b.name, shown)
	}
	var points [][]byte
	for _, e := range envs {
		ct, err := cosign.ParseCiphertext(e.Ciphertext, cosign.DetectEncoding(e.Ciphertext))
		if err != nil {
			t.Fatal(err)
		}
		t1 := b.key.share.ConsentPoint(&ct.C1)
		if corrupt && len(points) > 0 {
			t1 = [cosign.PointSize]byte(points[0])
		}
		points = append(points, t1[:])
	}
	chosen, err := b.phone.Choose(bg, &hufuv1.ChooseRequest{SessionId: shown.SessionId, CertificateSerial: b.serial, ConsentPoints: points})
	if err != nil {
		return err
	}
	st, err := bidopening.ParseStatement(string(chosen.Challenge))
	if err != nil || st.Opening != shown.Opening.Id || st.Serial != b.serial || len(st.Envelopes) != len(envs) {
		t.Fatalf("statement %q: %v", chosen.Challenge, err)
	}
	for i, e := range st.Envelopes {
		p := cosign.Point(points[i])
		if e.ID != envs[i].Id || e.T1SHA256 != bidopening.T1Hash(&p) {
			t.Fatalf("statement envelope %d is not what the phone sent", i)
		}
	}
	e, err := cosign.Digest(&b.key.public, nil, chosen.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := cosignDigests(t, b.phone, b.key, shown.SessionId, [][cosign.ScalarSize]byte{e})
	if err != nil {
		return err
	}
	_, err = b.phone.Complete(bg, &hufuv1.CompleteRequest{SessionId: shown.SessionId, Signatures: sigs})
	return err
}

// releaseAll reads a Release stream to its end.
func releaseAll(sys hufuv1.OpeningServiceClient, req *hufuv1.ReleaseRequest) ([]*hufuv1.ReleasedEnvelope, error) {
	stream, err := sys.Release(bg, req)
	if err != nil {
		return nil, err
	}
	var out []*hufuv1.ReleasedEnvelope
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r.Envelopes...)
	}
}

// TestBidOpening runs an opening end to end: personal bidders and an enterprise's staff
// member (delegated pair) consent by scanning, the system releases in bulk, and the report
// verifies offline; early, foreign and late attempts are refused and recorded.
func TestBidOpening(t *testing.T) {
	const other = devpki.CLIClientName + ".other"
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{
			{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.OpeningService"}},
			{Name: other, Services: []string{"hufu.v1.OpeningService", "hufu.v1.ScanService"}},
		}
	})
	desk := a.desk()
	sys, scans := a.openingSystem(devpki.CLIClientName)
	foreign, foreignScans := a.openingSystem(other)

	var bidders []*bidder
	for i, phone := range []string{"13800138071", "13800138072"} {
		p := newApplicant(t, a, phone, "bid-phone-0"+string(rune('1'+i)), "bid-key-0"+string(rune('1'+i)))
		serial, encKey := p.issueForEnvelopes(desk) // bids are enveloped to the encryption certificate
		cert, _, _, _ := p.download(serial)
		key := *encKey
		key.cred = client.PINCredential("123456") // the clock moves past any ticket's life
		bidders = append(bidders, &bidder{name: phone, phone: hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn()), key: &key,
			serial: serial, pub: cert.PublicKey.(*ecdsa.PublicKey), conn: p.conn})
	}
	staff := enterpriseStaffBidder(t, a, desk)
	bidders = append(bidders, staff)

	// The system's own SM2 key receives the released SM4 keys.
	resultKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	resultPub := elliptic(resultKey)
	now := a.clock.Now()
	start, end := now.Add(time.Hour), now.Add(3*time.Hour)
	req := &hufuv1.CreateOpeningRequest{RequestId: "open-0001", ProjectCode: "FZ-2026-118", ProjectName: "示范道路工程施工", PlatformId: "demo",
		WindowStart: timestamppb.New(start), WindowEnd: timestamppb.New(end), ResultPublicKey: resultPub}
	created, err := sys.CreateOpening(bg, req)
	if err != nil {
		t.Fatal(err)
	}
	o := created.Opening
	if again, err := sys.CreateOpening(bg, req); err != nil || again.Opening.Id != o.Id {
		t.Fatalf("idempotent create: %v %v", again, err)
	}
	for _, c := range []struct {
		field  string
		mutate func(*hufuv1.CreateOpeningRequest)
	}{
		{"window_start", func(r *hufuv1.CreateOpeningRequest) { r.WindowStart = timestamppb.New(now.Add(-time.Minute)) }},
		{"window_start", func(r *hufuv1.CreateOpeningRequest) {
			r.WindowStart = timestamppb.New(now.Add(2 * 366 * 24 * time.Hour))
		}},
		{"window_end", func(r *hufuv1.CreateOpeningRequest) { r.WindowEnd = r.WindowStart }},
		// A right-to-left override would show the bidder another project code than signed.
		{"project_code", func(r *hufuv1.CreateOpeningRequest) { r.ProjectCode = "FZ\u202e811-6202" }},
		{"project_name", func(r *hufuv1.CreateOpeningRequest) { r.ProjectName = "道路\n工程" }},
		{"platform_id", func(r *hufuv1.CreateOpeningRequest) { r.PlatformId = "nowhere" }},
		{"result_public_key", func(r *hufuv1.CreateOpeningRequest) { r.ResultPublicKey = []byte{4, 1, 2, 3} }},
	} {
		bad := proto.Clone(req).(*hufuv1.CreateOpeningRequest)
		bad.RequestId = "open-bad-" + c.field
		c.mutate(bad)
		_, err = sys.CreateOpening(bg, bad)
		wantCode(t, err, codes.InvalidArgument, c.field)
	}

	// Envelopes: two for each bidder, one in the ASN.1 layout.
	keys := map[string][]byte{}
	var regs []*hufuv1.EnvelopeRegistration
	for i, b := range bidders {
		for j := range 2 {
			id := "bid-" + string(rune('a'+i)) + "-" + string(rune('1'+j))
			sm4 := make([]byte, 16)
			rand.Read(sm4)
			opts := sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2)
			if j == 1 {
				opts = sm2.ASN1EncrypterOpts
			}
			ct, err := sm2.Encrypt(rand.Reader, b.pub, sm4, opts)
			if err != nil {
				t.Fatal(err)
			}
			keys[id] = sm4
			regs = append(regs, &hufuv1.EnvelopeRegistration{EnvelopeId: id, CertificateSerial: b.serial, Ciphertext: ct})
		}
	}
	if r, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: regs}); err != nil || r.Envelopes != 6 {
		t.Fatalf("register: %v %v", r, err)
	}
	if r, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: regs[:2]}); err != nil || r.Registered != 0 {
		t.Fatalf("a repeated registration is a no-op: %v %v", r, err)
	}
	_, err = sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "bid-x", CertificateSerial: bidders[0].serial, Ciphertext: []byte{4, 1, 2}}}})
	wantCode(t, err, codes.InvalidArgument, "envelopes[0].ciphertext")
	dup := &hufuv1.EnvelopeRegistration{EnvelopeId: "bid-dup", CertificateSerial: bidders[0].serial, Ciphertext: regs[0].Ciphertext}
	_, err = sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: []*hufuv1.EnvelopeRegistration{dup}})
	wantCode(t, err, codes.AlreadyExists, "envelopes[0].ciphertext")
	twice := mustEncrypt(t, bidders[0].pub)
	_, err = sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "bid-x1", CertificateSerial: bidders[0].serial, Ciphertext: twice}, {EnvelopeId: "bid-x2", CertificateSerial: bidders[0].serial, Ciphertext: twice}}})
	wantCode(t, err, codes.InvalidArgument, "envelopes[1].ciphertext")

	// Another system sees nothing of the opening.
	_, err = foreign.GetOpening(bg, &hufuv1.GetOpeningRequest{OpeningId: o.Id})
	wantCode(t, err, codes.NotFound, "")
	_, err = releaseAll(foreign, &hufuv1.ReleaseRequest{OpeningId: o.Id})
	wantCode(t, err, codes.NotFound, "")
	_, err = foreignScans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "hall-foreign", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT, OpeningId: o.Id})
	wantCode(t, err, codes.InvalidArgument, "opening_id")

	// Before the opening time: the plain decryption, the release and the consent are refused,
	// naming the opening time.
	c1 := func(ct []byte) []byte {
		parsed, err := cosign.ParseCiphertext(ct, cosign.DetectEncoding(ct))
		if err != nil {
			t.Fatal(err)
		}
		return parsed.C1[:]
	}
	openingTime := start.UTC().Format(time.RFC3339)
	_, err = bidders[0].key.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: bidders[0].key.id, Credential: bidders[0].key.cred, C1: c1(regs[0].Ciphertext)})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(errMessage(err), openingTime) {
		t.Fatalf("the refusal does not name the opening time %s: %v", openingTime, err)
	}
	batch, err := bidders[0].key.cosign.DecryptBatch(bg, &hufuv1.DecryptBatchRequest{KeyId: bidders[0].key.id, Credential: bidders[0].key.cred,
		C1S: [][]byte{c1(regs[1].Ciphertext)}})
	if err != nil || batch.Items[0].ErrorCode != uint32(codes.FailedPrecondition) {
		t.Fatalf("an early batch decryption is refused item by item: %v %v", batch, err)
	}
	// Blinding does not help: the phone sends r·C1 and would unblind the answer, but a key
	// with an envelope in an opening not yet open decrypts nothing at all.
	blinded := blind(t, c1(regs[0].Ciphertext))
	_, err = bidders[0].key.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: bidders[0].key.id, Credential: bidders[0].key.cred, C1: blinded})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
	early, err := scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "decrypt-early", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT, OpeningId: o.Id})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, bidders[0].consent(t, early.Session.QrPayload, false), codes.FailedPrecondition, "")

	// Sealing fixes the manifest.
	sealed, err := sys.SealOpening(bg, &hufuv1.SealOpeningRequest{OpeningId: o.Id})
	if err != nil || sealed.Opening.State != hufuv1.OpeningState_OPENING_STATE_SEALED || len(sealed.Opening.ManifestSha256) != 32 {
		t.Fatalf("seal: %v %v", sealed, err)
	}
	_, err = sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "bid-late", CertificateSerial: bidders[0].serial, Ciphertext: mustEncrypt(t, bidders[0].pub)}}})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = sys.RemoveEnvelope(bg, &hufuv1.RemoveEnvelopeRequest{OpeningId: o.Id, EnvelopeId: "bid-a-1"})
	wantCode(t, err, codes.FailedPrecondition, "")

	// The opening time: the first bidder consents through a code of their own, the others
	// through the hall code; the second corrupts a consent point.
	a.clock.Advance(time.Hour + time.Minute)
	own, err := scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "decrypt-a", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT, OpeningId: o.Id})
	if err != nil {
		t.Fatal(err)
	}
	if err := bidders[0].consent(t, own.Session.QrPayload, false); err != nil {
		t.Fatalf("consent: %v", err)
	}
	hall, err := scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "decrypt-hall", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT,
		OpeningId: o.Id, Hall: true, TtlSeconds: 1800})
	if err != nil {
		t.Fatal(err)
	}
	if err := bidders[1].consent(t, hall.Session.QrPayload, true); err != nil {
		t.Fatalf("hall consent: %v", err)
	}
	if err := staff.consent(t, hall.Session.QrPayload, false); err != nil {
		t.Fatalf("staff consent through the delegated pair: %v", err)
	}

	// Release: every consented envelope, each checked by C3; the corrupted one fails alone.
	got, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id})
	if err != nil || len(got) != 6 {
		t.Fatalf("release: %d answers, %v", len(got), err)
	}
	for _, r := range got {
		if r.EnvelopeId == "bid-b-2" {
			if !strings.Contains(r.Error, "c3_mismatch") || r.EncryptedKey != nil {
				t.Fatalf("the corrupted consent point was not caught: %v", r)
			}
			continue
		}
		if r.Error != "" || len(r.Key) != 0 {
			t.Fatalf("envelope %s: %v", r.EnvelopeId, r)
		}
		plain, err := sm2.Decrypt(resultKey, r.EncryptedKey)
		if err != nil || !bytes.Equal(plain, keys[r.EnvelopeId]) {
			t.Fatalf("envelope %s released %x, want %x (%v)", r.EnvelopeId, plain, keys[r.EnvelopeId], err)
		}
	}
	// Released keys are not released twice unless asked; a failed envelope is tried again.
	if again, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id}); err != nil || len(again) != 1 || again[0].EnvelopeId != "bid-b-2" ||
		!strings.HasPrefix(again[0].Error, "c3_mismatch") {
		t.Fatalf("a second release: %v %v", again, err)
	}
	if again, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id, EnvelopeIds: []string{"bid-c-1"}, IncludeReleased: true}); err != nil ||
		len(again) != 1 || again[0].Error != "" {
		t.Fatalf("a repeated release: %v %v", again, err)
	}
	// A share refresh after the consent: the consent points open with the old share only, and
	// the release says so (the bidder consents again), rather than blaming the points.
	if _, err := client.RefreshKey(bg, staff.conn, staff.ks, staff.key.id, client.PINCredential("135791"), nil); err != nil {
		t.Fatalf("refresh the staff pair: %v", err)
	}
	if again, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id, EnvelopeIds: []string{"bid-c-2"}, IncludeReleased: true}); err != nil ||
		len(again) != 1 || !strings.HasPrefix(again[0].Error, "pair_changed:") {
		t.Fatalf("a release after the pair's refresh: %v %v", again, err)
	}
	// The bidder may open their own copy on the phone inside the window.
	if _, err := bidders[0].key.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: bidders[0].key.id, Credential: bidders[0].key.cred,
		C1: c1(regs[0].Ciphertext)}); err != nil {
		t.Fatalf("the bidder's own decryption in the window: %v", err)
	}

	// Close: the report verifies offline under the appliance's audit key; tampering fails.
	closed, err := sys.CloseOpening(bg, &hufuv1.CloseOpeningRequest{OpeningId: o.Id})
	if err != nil || closed.Opening.State != hufuv1.OpeningState_OPENING_STATE_CLOSED {
		t.Fatalf("close: %v %v", closed, err)
	}
	if c := closed.Opening; c.Envelopes != 6 || c.Consented != 6 || c.Released != 5 || c.EarlyAttempts != 5 {
		t.Fatalf("counts: %v", c)
	}
	report := readReport(t, sys, o.Id)
	keyResp, err := scans.GetScanKey(bg, &hufuv1.GetScanKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	auditKey := parseECKey(t, keyResp.PublicKeyPem)
	rep, err := bidopening.Verify(report, auditKey)
	if err != nil {
		t.Fatalf("the report does not verify: %v\n%s", err, report)
	}
	delegated := 0
	for _, c := range rep.Consents {
		if c.Delegated != (c.Serial == staff.serial) {
			t.Fatalf("consent of %s: delegated = %v", c.Serial, c.Delegated)
		}
		if c.Delegated {
			delegated++
		}
	}
	phoneReleases := 0
	for _, r := range rep.Releases {
		if r.Via == "phone" {
			phoneReleases++
		}
	}
	if len(rep.Consents) != 3 || delegated != 1 || len(rep.Attempts) != 5 || len(rep.Envelopes) != 6 || len(rep.Releases) != 10 || phoneReleases != 1 {
		t.Fatalf("report: %d consents (%d delegated), %d attempts, %d envelopes, %d releases (%d on the phone)",
			len(rep.Consents), delegated, len(rep.Attempts), len(rep.Envelopes), len(rep.Releases), phoneReleases)
	}
	// Once the opening is over the key is bound no more: the blinded C1 is answered.
	if _, err := bidders[0].key.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: bidders[0].key.id, Credential: bidders[0].key.cred,
		C1: blind(t, c1(regs[0].Ciphertext))}); err != nil {
		t.Fatalf("after the opening: %v", err)
	}
	tampered := bytes.Replace(report, []byte(`"outcome":"ok"`), []byte(`"outcome":"OK"`), 1)
	if _, err := bidopening.Verify(tampered, auditKey); err == nil {
		t.Fatal("a tampered report verifies")
	}

	// After close nothing more is consented or released.
	_, err = releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "decrypt-late", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT, OpeningId: o.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
}

// blind returns r·C1 for a random r, as a phone trying to hide C1 would send (a throwaway
// server share's step is a multiplication by a random scalar).
func blind(t *testing.T, c1 []byte) []byte {
	t.Helper()
	_, throwaway, err := cosign.NewLocalPair(rand.Reader, []byte("blinding"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cosign.ParsePoint(c1)
	if err != nil {
		t.Fatal(err)
	}
	r := throwaway.Share.Decrypt(&cosign.DecryptRequest{C1: p}).T2
	return r[:]
}

func readReport(t *testing.T, sys hufuv1.OpeningServiceClient, id string) []byte {
	t.Helper()
	stream, err := sys.GetReport(context.Background(), &hufuv1.GetReportRequest{OpeningId: id})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for {
		part, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return b
		}
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, part.Chunk...)
	}
}

func parseECKey(t *testing.T, pemText string) *ecdsa.PublicKey {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		t.Fatal("no PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ecdsa.PublicKey)
}

// elliptic is an SM2 public key as the 65-byte point.
func elliptic(k *sm2.PrivateKey) []byte {
	p, err := cosign.PointFromPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return p[:]
}

func mustEncrypt(t *testing.T, pub *ecdsa.PublicKey) []byte {
	t.Helper()
	ct, err := sm2.Encrypt(rand.Reader, pub, []byte("0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// enterpriseStaffBidder sets up an enterprise certificate pair and a staff member holding
// delegated pairs of both its keys on their phone; bids are enveloped to the enterprise's
// encryption certificate and opened with the member's pair of its key.
func enterpriseStaffBidder(t *testing.T, a *certAppl, desk hufuv1.ReviewServiceClient) *bidder {
	t.Helper()
	boss := newMember(t, a, "13800138081", "bid-admin-01")
	staff, staffKS := keystoreMember(t, a, "13800138082", "bid-staff-01")
	boss.claimAndPay(desk, usccA, "福州示范科技有限公司")
	serial := boss.encSerial
	cert, _, _, _ := boss.download(serial)
	inv, err := boss.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	if err != nil {
		t.Fatal(err)
	}
	app, err := staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-bid-1", Invite: inv.Payload})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boss.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RegisterDelegationDevice(bg, staff.conn, staffKS, usccA); err != nil {
		t.Fatal(err)
	}
	bossKS := saveEnterpriseKeys(t, boss)
	fp, err := client.ThisDeviceFingerprint(staffKS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.GrantDelegation(bg, boss.conn, bossKS, usccA, staff.userID, fp, client.PINCredential("654321")); err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := client.AcceptDelegation(bg, staff.conn, staffKS, usccA, "135791"); err != nil {
		t.Fatalf("accept: %v", err)
	}
	entry, err := staffKS.Load(boss.enc.id)
	if err != nil {
		t.Fatalf("the staff member's pair of the enterprise encryption key: %v", err)
	}
	key := &phoneKey{id: entry.ID, public: entry.Public, share: entry.Share, cred: client.PINCredential("135791"),
		cosign: hufuv1.NewCosignServiceClient(staff.conn.ClientConn())}
	return &bidder{name: "staff", phone: hufuv1.NewPhoneScanServiceClient(staff.conn.ClientConn()), key: key, serial: serial,
		pub: cert.PublicKey.(*ecdsa.PublicKey), conn: staff.conn, ks: staffKS}
}

// TestBidOpeningWindowEnds: an opening nobody closes closes itself at its window end, with
// its report; nothing is consented or released after, and the report shows what happened.
func TestBidOpeningWindowEnds(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{
			{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.OpeningService"}},
		}
	})
	sys, scans := a.openingSystem(devpki.CLIClientName)
	p := newApplicant(t, a, "13800138075", "end-phone-01", "end-key-01")
	serial, _ := p.issueForEnvelopes(a.desk())
	cert, _, _, _ := p.download(serial)
	now := a.clock.Now()
	created, err := sys.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "ends-0001", ProjectCode: "END-1", ProjectName: "到期开标",
		PlatformId: "demo", WindowStart: timestamppb.New(now.Add(time.Hour)), WindowEnd: timestamppb.New(now.Add(80 * time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Opening.Id
	ct := mustEncrypt(t, cert.PublicKey.(*ecdsa.PublicKey))
	if _, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "only", CertificateSerial: serial, Ciphertext: ct}}}); err != nil {
		t.Fatal(err)
	}
	// Not sealed by hand: the window start seals it, the window end closes it.
	a.clock.Advance(65 * time.Minute) // (the phone's access token lives 2 hours)
	got, err := sys.GetOpening(bg, &hufuv1.GetOpeningRequest{OpeningId: id})
	if err != nil || got.Opening.State != hufuv1.OpeningState_OPENING_STATE_SEALED || !got.Opening.SealedAt.AsTime().Equal(now.Add(time.Hour)) {
		t.Fatalf("sealed at the deadline: %v %v", got, err)
	}
	_, err = sys.CloseOpening(bg, &hufuv1.CloseOpeningRequest{OpeningId: "0123456789abcdef0123"})
	wantCode(t, err, codes.NotFound, "")
	a.clock.Advance(20 * time.Minute)
	if got, err = sys.GetOpening(bg, &hufuv1.GetOpeningRequest{OpeningId: id}); err != nil || got.Opening.State != hufuv1.OpeningState_OPENING_STATE_CLOSED {
		t.Fatalf("closed at the window end: %v %v", got, err)
	}
	_, err = releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: id})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "decrypt-after", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT, OpeningId: id})
	wantCode(t, err, codes.FailedPrecondition, "")
	parsed, err := cosign.ParseCiphertext(ct, cosign.C1C3C2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.enc.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: p.enc.id, Credential: client.PINCredential("123456"), C1: parsed.C1[:]})
	wantCode(t, err, codes.FailedPrecondition, "")
	keyResp, err := scans.GetScanKey(bg, &hufuv1.GetScanKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bidopening.Verify(readReport(t, sys, id), parseECKey(t, keyResp.PublicKeyPem))
	if err != nil || len(rep.Envelopes) != 1 || len(rep.Consents) != 0 || len(rep.Releases) != 0 {
		t.Fatalf("report: %+v %v", rep, err)
	}
	// The bids of a closed opening may be opened again (重新开标) in a new one.
	again, err := sys.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "ends-0002", ProjectCode: "END-1", ProjectName: "重新开标",
		PlatformId: "demo", WindowStart: timestamppb.New(a.clock.Now().Add(time.Hour)), WindowEnd: timestamppb.New(a.clock.Now().Add(2 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: again.Opening.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "only", CertificateSerial: serial, Ciphertext: ct}}}); err != nil {
		t.Fatalf("registering a closed opening's bid again: %v", err)
	}
}

// TestDecryptGuardAcrossRestart: a key decrypts freely until an envelope of it is registered,
// then nothing until its opening's window, and still nothing after a restart, when the
// guard's set of keys with envelopes comes from the store rather than from the registration.
// A key with no envelope decrypts throughout.
func TestDecryptGuardAcrossRestart(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{
			{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.OpeningService"}},
		}
	})
	const phone, device = "13800138076", "guard-phone-01"
	p := newApplicant(t, a, phone, device, "guard-key-01")
	serial, enc := p.issueForEnvelopes(a.desk())
	cert, _, _, _ := p.download(serial)
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	acct, err := p.conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	if err != nil {
		t.Fatal(err)
	}
	free := createKey(t, p.conn, acct.Account.Id, "guard-free-01", "123456")
	decrypt := func(cs hufuv1.CosignServiceClient, keyID string, pub *ecdsa.PublicKey) error {
		t.Helper()
		raw := mustEncrypt(t, pub)
		ct, err := cosign.ParseCiphertext(raw, cosign.DetectEncoding(raw))
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: keyID, Credential: client.PINCredential("123456"), C1: ct.C1[:]})
		return err
	}
	freePub := free.public.PublicKey()
	cs := enc.cosign
	if err := decrypt(cs, enc.id, pub); err != nil {
		t.Fatalf("a key with no envelope: %v", err)
	}

	sys, _ := a.openingSystem(devpki.CLIClientName)
	start := a.clock.Now().Add(time.Hour)
	created, err := sys.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "guard-0001", ProjectCode: "GUARD-1", ProjectName: "重启开标",
		PlatformId: "demo", WindowStart: timestamppb.New(start), WindowEnd: timestamppb.New(start.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: created.Opening.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "only", CertificateSerial: serial, Ciphertext: mustEncrypt(t, pub)}}}); err != nil {
		t.Fatal(err)
	}
	openingTime := start.UTC().Format(time.RFC3339)
	check := func(when string, cs hufuv1.CosignServiceClient) {
		t.Helper()
		// The free key first: after a restart its decryption loads the set.
		if err := decrypt(cs, free.id, freePub); err != nil {
			t.Fatalf("%s: a key with no envelope: %v", when, err)
		}
		err := decrypt(cs, enc.id, pub) // any ciphertext, not only the envelope: blinding is no way round
		wantCode(t, err, codes.FailedPrecondition, "")
		if !strings.Contains(errMessage(err), openingTime) {
			t.Fatalf("%s: the refusal does not name the opening time %s: %v", when, openingTime, err)
		}
	}
	check("after the registration", cs)

	a.restart()
	conn := a.dial(device)
	a.signIn(conn, phone, device)
	check("after a restart", hufuv1.NewCosignServiceClient(conn.ClientConn()))
}
