package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cms"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestOpeningCommands runs a bid opening through the CLI: the bid-opening system (hufu
// opening, with the development CLI certificate) creates an opening, registers a bidder's
// envelopes (two raw SM2 ciphertexts made with hufu encrypt and a bid file enveloped as
// GENERATE does), seals it; at the opening time the bidder scans a code and declines, then
// scans the hall code and consents (hufu scan); the system releases the keys, which are the
// ones enveloped, closes the opening and fetches the report, which verifies offline under
// the audit key the auditor reads from the admin surface, and a tampered copy does not. In a
// second opening the system follows the bidder's code (-wait) and releases the key encrypted
// to its result key, then decrypted with the private key. The appliance's clock moves only
// when the test says, so the window opens without waiting.
func TestOpeningCommands(t *testing.T) {
	auditor, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, func(c *config.Config) { // the default configuration allows the CLI certificate OpeningService
		c.Admin.Tokens = []config.AdminToken{{Name: "auditor", Role: string(admin.Auditor), SHA256: hash}}
	})
	cfg, addr := d.Config, d.Addr
	home, sysHome, work := t.TempDir(), t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	path := func(name string) string { return filepath.Join(work, name) }
	try := func(h string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append([]string{"-addr", addr, "-daemon-dir", cfg.DataDir, "-home", h}, args...), strings.NewReader(""), &out, &out)
		return out.String(), err
	}
	bidder := func(args ...string) string {
		t.Helper()
		out, err := try(home, args...)
		if err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), out)
		}
		return out
	}
	certFlags := []string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem")}
	system := func(args ...string) string {
		t.Helper()
		out, err := try(sysHome, append(certFlags, args...)...)
		if err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), out)
		}
		return out
	}
	systemFails := func(want string, args ...string) error {
		t.Helper()
		out, err := try(sysHome, append(certFlags, args...)...)
		if err == nil || !strings.Contains(describe(err), want) {
			t.Fatalf("hufu %s: %v, want an error saying %q\n%s", strings.Join(args, " "), err, want, out)
		}
		return err
	}
	has := func(what, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: no %q in\n%s", what, w, out)
			}
		}
	}
	write := func(name string, b []byte) string {
		t.Helper()
		if err := os.WriteFile(path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path(name)
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	const pin = "135790"

	// A bidder with a certificate on this device.
	bidder("login", "-phone", "13800138000")
	bidder("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(bidder("key", "new", "-pin", pin))[1]
	letter := write("letter.txt", []byte("授权书"))
	orderID := regexp.MustCompile(`(?m)^([0-9a-f]{22}) `).FindStringSubmatch(bidder("cert", "apply", "-key", keyID, "-platforms", "demo", "-sign-letter", letter, "-pin", pin))[1]
	system("review", "approve", orderID)
	// Bids are enveloped to the pair's encryption certificate: serial below is that one.
	serial := regexp.MustCompile(`the encryption certificate ([0-9a-f]{32})`).FindStringSubmatch(bidder("cert", "pay", orderID))[1]
	bidder("cert", "download", serial, "-o", path("bidder.pem"))
	certPEM, err := os.ReadFile(path("bidder.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}

	// The bids: two SM4 keys enveloped with hufu encrypt (C1C3C2, ASN.1), and a bid file
	// enveloped as GENERATE does, whose file name needs sanitising into an envelope id.
	keyA, keyB := write("key-a", random(16)), write("key-b", random(16))
	bidder("encrypt", "-pub", path("bidder.pem"), "-in", keyA, "-out", path("bid-a.sm2"))
	bidder("encrypt", "-pub", path("bidder.pem"), "-in", keyB, "-out", path("bid-b.sm2"), "-asn1")
	bidFile := []byte("投标文件：报价 1,000,000 元")
	env, err := cms.Envelope(bidFile, cert)
	if err != nil {
		t.Fatal(err)
	}
	envFile := write("bid-c 投标.env", env)

	// Offline help, and the certificate a system needs.
	if out, err := try(sysHome, "opening", "release", "-h"); err != nil || !strings.Contains(out, "hufu opening release ID") ||
		!strings.Contains(out, "-result-key-private") {
		t.Fatalf("opening release -h: %v\n%s", err, out)
	}
	if out, err := try(sysHome, "opening", "list"); err == nil || !strings.Contains(err.Error(), "needs a client certificate") {
		t.Fatalf("opening list without a certificate: %v\n%s", err, out)
	}
	systemFails("exactly one of -start TIME and -in DURATION", "opening", "create", "-project", "FZ-2026-118", "-name", "示范道路工程施工")

	created := system("opening", "create", "-project", "FZ-2026-118", "-name", "示范道路工程施工", "-in", "30m", "-window", "2h")
	id := regexp.MustCompile(`opening ([0-9a-f]{20}) created`).FindStringSubmatch(created)
	if id == nil {
		t.Fatalf("opening create printed %q", created)
	}
	o := id[1]
	has("create", created, "project FZ-2026-118 示范道路工程施工 on platform demo", "no result key")

	systemFails("not an SM2 ciphertext", "opening", "register", o, "-cert", serial, write("garbage", []byte("not a ciphertext")))
	out := system("opening", "register", o, "-cert", serial, path("bid-a.sm2"), path("bid-b.sm2"), envFile)
	has("register", out, "envelope bid-a.sm2", "(SM2 ciphertext, C1C3C2)", "(SM2 ciphertext, ASN.1)", "envelope bid-c___.env",
		"key transport of a CMS EnvelopedData", "registered 3 new envelope(s) of 3 given; opening "+o+" has 3")
	has("seal", system("opening", "seal", o), "3 envelope(s), manifest SHA-256")
	has("show", system("opening", "show", o), "("+"sealed)", "FZ-2026-118  示范道路工程施工", "envelopes  3, consented 0")
	has("list", system("opening", "list"), o+"  sealed")
	has("envelopes", system("opening", "envelopes", o), "bid-a.sm2  certificate "+serial, "not consented")
	for _, args := range [][]string{{"opening", "show", o, "-o", "json"}, {"opening", "list", "--output", "json"}, {"opening", "envelopes", o, "-o", "json"}} {
		var v struct {
			Opening   map[string]any   `json:"opening"`
			Openings  []map[string]any `json:"openings"`
			Envelopes []map[string]any `json:"envelopes"`
		}
		if out := system(args...); json.Unmarshal([]byte(out), &v) != nil || v.Opening == nil && len(v.Openings) == 0 && len(v.Envelopes) != 3 {
			t.Fatalf("%v: %s", args, out)
		}
	}

	// The opening time.
	d.Clock.Advance(35 * time.Minute)
	payload := func(out string) string {
		t.Helper()
		p := regexp.MustCompile(`(?m)^HUFU1\.SCAN\.\S+$`).FindString(out)
		if p == "" {
			t.Fatalf("no QR payload in\n%s", out)
		}
		return p
	}
	out = bidder("scan", payload(system("opening", "qr", o)), "-decline", "not now")
	has("scan, declined", out, "asks you to release your bid envelopes in this opening to the bid-opening system (扫码解密)",
		"opening of project FZ-2026-118 示范道路工程施工 (opening "+o+")", "window ", "envelope bid-a.sm2", "envelope bid-c___.env", "declined")
	hall := system("opening", "qr", o, "-hall", "-ttl", "10m")
	has("qr -hall", hall, "the hall's DECRYPT code", "█")
	out = bidder("scan", payload(hall), "-pin", pin)
	has("scan, consented", out, "consented with certificate "+serial+": the bid-opening system may now release envelopes bid-a.sm2, bid-b.sm2, bid-c___.env")

	keys := path("keys")
	out = system("opening", "release", o, "-out", keys)
	has("release", out, "bid-a.sm2                ok", "released 3 of 3 envelope(s) to "+keys)
	for envelope, plain := range map[string]string{"bid-a.sm2": keyA, "bid-b.sm2": keyB} {
		got, err := os.ReadFile(filepath.Join(keys, envelope+".key"))
		want, _ := os.ReadFile(plain)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: released %x, enveloped %x (%v)", envelope, got, want, err)
		}
		if fi, _ := os.Stat(filepath.Join(keys, envelope+".key")); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key has mode %v", envelope, fi.Mode())
		}
	}
	sm4, err := os.ReadFile(filepath.Join(keys, "bid-c___.env.key"))
	if err != nil {
		t.Fatal(err)
	}
	opened, err := cms.OpenEnvelope(env, nil, func([]byte) ([]byte, error) { return sm4, nil })
	if err != nil || !bytes.Equal(opened, bidFile) {
		t.Fatalf("the released key does not open the bid file: %q %v", opened, err)
	}
	has("release again", system("opening", "release", o, "-out", keys), "nothing released")
	has("envelopes", system("opening", "envelopes", o), "consented  released 1 time(s)")

	// Close, the report, and the auditor's offline check with the key from the admin surface.
	earlyLog := write("audit-early.jsonl", adminGet(t, d, auditor, "/audit/export"))
	has("close", system("opening", "close", o), "closed at", "3 envelope(s), 3 consented, 3 released, 0 early attempt(s)")
	report := path("report.jsonl")
	has("report", system("opening", "report", o, "-o", report, "-key-out", path("appliance-key.pem")), "wrote the report of opening "+o,
		"obtains the key independently")
	auditKey := write("audit.pem", adminGet(t, d, auditor, "/audit/public-key"))
	fromAppliance, _ := os.ReadFile(path("appliance-key.pem"))
	if k1, k2 := mustScanKey(t, string(fromAppliance)), mustScanKey(t, string(mustRead(t, auditKey))); !k1.Equal(k2) {
		t.Fatal("GetScanKey's key is not the admin surface's audit key")
	}
	out, err = try(t.TempDir(), "opening", "verify", report, "-key", auditKey) // offline: no certificate, no session
	if err != nil {
		t.Fatalf("opening verify: %s\n%s", describe(err), out)
	}
	has("verify", out, "opening report verifies", "project    FZ-2026-118  示范道路工程施工 (platform demo)", "envelopes  3",
		"consents   1", "certificate "+serial, "envelopes bid-a.sm2, bid-b.sm2, bid-c___.env", "releases   3 ok, 0 failed", "attempts   0", "audit      chain at record")
	// Tied into the audit log the auditor exports: the report's position and its
	// opening.report record (an export starts with a fresh signed checkpoint).
	auditLog := write("audit.jsonl", adminGet(t, d, auditor, "/audit/export"))
	out, err = try(t.TempDir(), "opening", "verify", report, "-key", auditKey, "-audit-log", auditLog)
	if err != nil {
		t.Fatalf("opening verify -audit-log: %s\n%s", describe(err), out)
	}
	has("verify -audit-log", out, "audit log  verifies", "(opening.report) names this file")
	// A log exported before the close holds neither the report's position nor its record.
	if out, err = try(t.TempDir(), "opening", "verify", report, "-key", auditKey, "-audit-log", earlyLog); err == nil ||
		!strings.Contains(err.Error(), "does NOT tie into the audit log") {
		t.Fatalf("a report tied into a log from before it: %v\n%s", err, out)
	}
	tampered := write("tampered.jsonl", bytes.Replace(mustRead(t, report), []byte(`"outcome":"ok"`), []byte(`"outcome":"OK"`), 1))
	out, err = try(t.TempDir(), "opening", "verify", tampered, "-key", auditKey)
	var ve *bidopening.VerifyError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "does NOT verify") {
		t.Fatalf("a tampered report: %v\n%s", err, out)
	}

	// A second opening releases its keys encrypted to the system's result key.
	resultKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := smx509.MarshalPKIXPublicKey(&resultKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := smx509.MarshalPKCS8PrivateKey(resultKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := sm2.GenerateKey(rand.Reader)
	otherDER, _ := smx509.MarshalPKCS8PrivateKey(otherKey)
	pubFile := write("result.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	privFile := write("result-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	otherFile := write("other-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherDER}))
	start := d.Clock.Now().Add(10 * time.Minute).Format(time.RFC3339)
	created = system("opening", "create", "-project", "FZ-2026-119", "-name", "示范桥梁工程", "-start", start, "-window", "1h", "-result-key", pubFile)
	has("create with a result key", created, "released keys come encrypted to it")
	o2 := regexp.MustCompile(`opening ([0-9a-f]{20}) created`).FindStringSubmatch(created)[1]
	keyD := write("key-d", random(16))
	bidder("encrypt", "-pub", path("bidder.pem"), "-in", keyD, "-out", path("bid-d.sm2"))
	system("opening", "register", o2, "-envelope", "bid-d", "-cert", serial, "-in", path("bid-d.sm2"))
	d.Clock.Advance(11 * time.Minute)
	// This time the system follows the bidder's own code until the bidder has answered.
	pr, pw := io.Pipe()
	waited := make(chan error, 1)
	go func() {
		err := run(append([]string{"-addr", addr, "-daemon-dir", cfg.DataDir, "-home", sysHome}, append(certFlags, "opening", "qr", o2, "-wait")...),
			strings.NewReader(""), pw, pw)
		pw.CloseWithError(io.EOF)
		waited <- err
	}()
	var qrOut strings.Builder
	lines := bufio.NewScanner(pr)
	lines.Buffer(nil, 1<<20)
	code := ""
	for code == "" && lines.Scan() {
		qrOut.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "HUFU1.SCAN.") {
			code = lines.Text()
		}
	}
	if code == "" {
		t.Fatalf("opening qr -wait printed no payload: %s\n%v", qrOut.String(), <-waited)
	}
	drained := make(chan struct{})
	go func() {
		for lines.Scan() {
			qrOut.WriteString(lines.Text() + "\n")
		}
		close(drained)
	}()
	has("scan, consented", bidder("scan", code, "-pin", pin), "consented with certificate "+serial+": the bid-opening system may now release envelope bid-d")
	if err := <-waited; err != nil {
		t.Fatalf("opening qr -wait: %s\n%s", describe(err), qrOut.String())
	}
	<-drained
	has("qr -wait", qrOut.String(), "a bidder's DECRYPT code", "scanned\n", "certificate "+serial+" chosen", "completed\n", "consented: hufu opening release "+o2)
	systemFails("-wait follows one bidder's session", "opening", "qr", o2, "-wait", "-hall")
	keys2 := path("keys2")
	systemFails("is not the private key of opening "+o2+"'s result key", "opening", "release", o2, "-out", keys2, "-result-key-private", otherFile)
	has("release encrypted", system("opening", "release", o2, "-out", keys2), "bid-d.key.sm2", "released 1 of 1")
	plain, err := sm2.Decrypt(resultKey, mustRead(t, filepath.Join(keys2, "bid-d.key.sm2")))
	if err != nil || !bytes.Equal(plain, mustRead(t, keyD)) {
		t.Fatalf("the encrypted key: %x %v", plain, err)
	}
	has("release decrypted", system("opening", "release", o2, "-out", keys2, "-again", "-envelope", "bid-d", "-result-key-private", privFile),
		filepath.Join(keys2, "bid-d.key"), "released 1 of 1")
	if got := mustRead(t, filepath.Join(keys2, "bid-d.key")); !bytes.Equal(got, mustRead(t, keyD)) {
		t.Fatalf("the decrypted key %x", got)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustScanKey(t *testing.T, pemText string) *ecdsa.PublicKey {
	t.Helper()
	k, err := client.ParseScanKey(pemText)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// adminGet is what an auditor reads from the admin surface: the audit public key, the export.
func adminGet(t *testing.T, d *daemontest.Appliance, token, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", d.AdminURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	return b
}
