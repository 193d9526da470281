package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestScanCommands plays a business system (hufu rp, with the development CLI certificate)
// and the phone (hufu scan) against each other: the system waits on WatchSession while the
// phone, given the payload the system printed, answers. Bind, then log in, then generate a
// bid file that the bidder opens with the two-party decryption.
func TestScanCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t) // the default configuration allows the CLI certificate ScanService
	cfg, addr := d.Config, d.Addr
	home, rpHome, work := t.TempDir(), t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	global := func(h string) []string { return []string{"-addr", addr, "-daemon-dir", cfg.DataDir, "-home", h} }
	hufu := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(append(global(home), args...), strings.NewReader(""), &out, &out); err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), out.String())
		}
		return out.String()
	}
	system := []string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem")}

	// A person with a certificate on this device.
	hufu("login", "-phone", "13800138000")
	hufu("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	t.Setenv("HUFU_PIN", "135790")
	keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(hufu("key", "new"))[1]
	letter := filepath.Join(work, "letter.txt")
	if err := os.WriteFile(letter, []byte("授权书"), 0o600); err != nil {
		t.Fatal(err)
	}
	applied := hufu("cert", "apply", "-key", keyID, "-platforms", "demo", "-sign-letter", letter)
	orderID := regexp.MustCompile(`(?m)^([0-9a-f]{22}) `).FindStringSubmatch(applied)[1]
	encKeyID := regexp.MustCompile(`created encryption key (\S+)`).FindStringSubmatch(applied)[1]
	hufu(append(system, "review", "approve", orderID)...)
	serial := regexp.MustCompile(`cert download ([0-9a-f]{32})`).FindStringSubmatch(hufu("cert", "pay", orderID))[1]

	// rpAndScan runs hufu rp in the background, reads the QR payload from its output, runs
	// hufu scan with it and returns both outputs once rp has ended.
	var lastPayload string
	rpAndScan := func(rpArgs []string, scanArgs ...string) (rpOut, scanOut string, rpErr error) {
		t.Helper()
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := run(append(append(global(rpHome), system...), append([]string{"rp"}, rpArgs...)...), strings.NewReader(""), pw, pw)
			pw.CloseWithError(io.EOF)
			done <- err
		}()
		var rpText strings.Builder
		lines := bufio.NewScanner(pr)
		lines.Buffer(nil, 1<<20)
		payload := ""
		for payload == "" && lines.Scan() {
			rpText.WriteString(lines.Text() + "\n")
			if strings.HasPrefix(lines.Text(), "HUFU1.SCAN.") {
				payload = lines.Text()
			}
		}
		if payload == "" {
			t.Fatalf("hufu rp %s printed no payload: %s\n%v", strings.Join(rpArgs, " "), rpText.String(), <-done)
		}
		lastPayload = payload
		drained := make(chan struct{})
		go func() {
			for lines.Scan() {
				rpText.WriteString(lines.Text() + "\n")
			}
			close(drained)
		}()
		var out bytes.Buffer
		scanErr := run(append(global(home), append([]string{"scan", payload}, scanArgs...)...), strings.NewReader(""), &out, &out)
		rpErr = <-done
		<-drained
		if scanErr != nil {
			t.Fatalf("hufu scan: %s\n%s\nrp: %s", describe(scanErr), out.String(), rpText.String())
		}
		return rpText.String(), out.String(), rpErr
	}

	// LOGIN before BIND: the certificate is not bound, the phone is told, and declines.
	rpOut, scanOut, err := rpAndScan([]string{"login", "-ttl", "1m"}, "-decline", "not bound yet")
	if err == nil || !strings.Contains(describe(err), "declined by the person: not bound yet") || !strings.Contains(scanOut, "sign in with your certificate") {
		t.Fatalf("declined login: %v\nrp: %s\nscan: %s", err, rpOut, scanOut)
	}
	if pins, err := os.ReadFile(filepath.Join(home, "scan-keys.json")); err != nil || !strings.Contains(string(pins), addr) {
		t.Fatalf("scan key not pinned: %s %v", pins, err)
	}

	rpOut, scanOut, err = rpAndScan([]string{"bind", "-reference", "user-42", "-person-name", "张三", "-id", "11010519491231002X"})
	if err != nil || !strings.Contains(rpOut, "bound: reference user-42 ↔ certificate "+serial) || !strings.Contains(scanOut, "as 张三") {
		t.Fatalf("bind: %v\nrp: %s\nscan: %s", err, rpOut, scanOut)
	}

	// The system's bindings: listed, resolved from the certificate.
	if out := hufu(append(system, "rp", "bindings", "-reference", "user-42")...); !strings.Contains(out, "reference user-42  certificate "+serial) {
		t.Fatalf("rp bindings: %s", out)
	}
	if out := hufu(append(system, "rp", "resolve", serial)...); !strings.Contains(out, "reference user-42") {
		t.Fatalf("rp resolve: %s", out)
	}
	if out := hufu("scan", "bindings"); !strings.Contains(out, "reference user-42  certificate "+serial) {
		t.Fatalf("scan bindings: %s", out)
	}

	rpOut, scanOut, err = rpAndScan([]string{"login"})
	if err != nil || !strings.Contains(rpOut, "scanned\n") || !strings.Contains(rpOut, "completed\n") ||
		!strings.Contains(rpOut, "logged in: reference user-42 ↔ certificate "+serial) || !strings.Contains(rpOut, "assertion verified") ||
		!strings.Contains(scanOut, "answered with certificate "+serial+": login completed") {
		t.Fatalf("login: %v\nrp: %s\nscan: %s", err, rpOut, scanOut)
	}

	bid := filepath.Join(work, "投标文件.txt")
	if err := os.WriteFile(bid, []byte("投标文件：报价 1,000,000 元"), 0o600); err != nil {
		t.Fatal(err)
	}
	rpOut, scanOut, err = rpAndScan([]string{"generate", "-reference", "user-42", "-in", bid})
	if err != nil || !strings.Contains(rpOut, "CMS verified") || !strings.Contains(rpOut, "enveloped to the encryption certificate") || !regexp.MustCompile(`(?m)^C1 04[0-9a-f]{128}$`).MatchString(rpOut) ||
		!strings.Contains(scanOut, "投标文件.txt  SM3 ") {
		t.Fatalf("generate: %v\nrp: %s\nscan: %s", err, rpOut, scanOut)
	}
	for _, f := range []string{bid + ".p7s", bid + ".env"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	// The bid was enveloped to the pair's encryption certificate: its key opens it, the
	// signing key is refused.
	opened := filepath.Join(work, "opened.txt")
	var refused bytes.Buffer
	if err := run(append(global(home), "open-bid", "-key", keyID, "-in", bid+".env", "-out", opened), strings.NewReader(""), &refused, &refused); err == nil ||
		!strings.Contains(describe(err), "signing key of a certificate pair") {
		t.Fatalf("open-bid with the signing key: %v %s", err, refused.String())
	}
	hufu("open-bid", "-key", encKeyID, "-in", bid+".env", "-out", opened)
	if got, err := os.ReadFile(opened); err != nil || string(got) != "投标文件：报价 1,000,000 元" {
		t.Fatalf("opened bid file: %q %v", got, err)
	}

	rpOut, scanOut, err = rpAndScan([]string{"auth"})
	if err != nil || !strings.Contains(rpOut, `"name": "张三"`) || !strings.Contains(rpOut, "signature by the appliance's scan key verified") ||
		!strings.Contains(scanOut, "consented") {
		t.Fatalf("auth: %v\nrp: %s\nscan: %s", err, rpOut, scanOut)
	}

	// An altered code is refused before it reaches the appliance; so is a good code once the
	// pinned key no longer matches the appliance's, with a message that says so.
	scanFails := func(payload, want string) {
		t.Helper()
		var out bytes.Buffer
		err := run(append(global(home), "scan", payload), strings.NewReader(""), &out, &out)
		if err == nil || !strings.Contains(describe(err), want) {
			t.Fatalf("scan %q: %v, want %q\n%s", payload, err, want, out.String())
		}
	}
	scanFails(strings.Replace(lastPayload, "HUFU1.SCAN.", "HUFU1.SCAN.0", 1), "not a scan code of this appliance, or altered")
	pinsFile := filepath.Join(home, "scan-keys.json")
	pins := map[string]string{}
	b, _ := os.ReadFile(pinsFile)
	if err := json.Unmarshal(b, &pins); err != nil {
		t.Fatal(err)
	}
	vector, err := os.ReadFile(filepath.Join("..", "..", "client", "testdata", "qr_vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var another struct {
		PublicKeyPEM string `json:"public_key_pem"`
	}
	if err := json.Unmarshal(vector, &another); err != nil {
		t.Fatal(err)
	}
	pins[addr] = another.PublicKeyPEM // another appliance's key
	b, _ = json.Marshal(pins)
	if err := os.WriteFile(pinsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	scanFails(lastPayload, "now shows another scan key")
}
