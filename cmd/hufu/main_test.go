package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// startDaemon runs an appliance in process (daemontest: SoftHSM2, Pebble, TLS) on the wall
// clock, which the CLI also reads, and returns its address and data directory.
func startDaemon(t *testing.T) (addr, dataDir string) {
	t.Helper()
	a := daemontest.StartOnWallClock(t)
	return a.Addr, a.Config.DataDir
}

// TestKeyCommands runs the CLI in process against the daemon: sign in, verify the identity,
// create a key, sign and verify a file, encrypt to the key's public key (from a PEM file,
// with no daemon) and decrypt, refresh, and list the usage.
func TestKeyCommands(t *testing.T) {
	addr, dataDir := startDaemon(t)
	home := t.TempDir()
	work := t.TempDir()
	t.Setenv("HUFU_PIN", "")
	hufu := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		all := append([]string{"-addr", addr, "-daemon-dir", dataDir, "-home", home}, args...)
		if err := run(all, strings.NewReader(stdin), &out, &errOut); err != nil {
			t.Fatalf("hufu %s: %s\n%s%s", strings.Join(args, " "), describe(err), out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	path := func(name string) string { return filepath.Join(work, name) }
	write := func(name, content string) {
		if err := os.WriteFile(path(name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	hufu("", "login", "-phone", "13800138000")
	hufu("", "verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")

	// The PIN typed twice at the prompt.
	created := hufu("135790\n135790\n", "key", "new", "-label", "bids")
	keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(created)
	if keyID == nil || !strings.Contains(created, "BEGIN PUBLIC KEY") {
		t.Fatalf("key new printed %q", created)
	}
	id := keyID[1]
	if list := hufu("", "key", "list"); !strings.Contains(list, id) || !strings.Contains(list, "yes (v1)") {
		t.Fatalf("key list: %q", list)
	}
	if show := hufu("", "key", "show", id); !strings.Contains(show, "status    active") || !strings.Contains(show, "on this device, version 1") {
		t.Fatalf("key show: %q", show)
	}
	write("key.pem", hufu("", "key", "show", "-pem", id))

	t.Setenv("HUFU_PIN", "135790")
	write("bid.txt", "投标文件: price 1,000,000")
	hufu("", "sign", "-key", id, "-in", path("bid.txt"), "-id", "bidder@example.cn")
	if out := hufu("", "verify", "-pub", path("key.pem"), "-in", path("bid.txt"), "-id", "bidder@example.cn"); !strings.Contains(out, "signature OK") {
		t.Fatalf("verify: %q", out)
	}
	// OpenSSL 3, when present, verifies the signature and encrypts to the key.
	if _, err := exec.LookPath("openssl"); err == nil {
		hufu("", "sign", "-key", id, "-in", path("bid.txt"), "-out", path("bid.default.sig"))
		cmd := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", path("key.pem"), "-rawin", "-digest", "sm3",
			"-in", path("bid.txt"), "-sigfile", path("bid.default.sig"), "-pkeyopt", "distid:1234567812345678")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
		cmd = exec.Command("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", path("key.pem"), "-in", path("bid.txt"), "-out", path("ossl.enc"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl encrypt: %v\n%s", err, out)
		}
		hufu("", "decrypt", "-key", id, "-in", path("ossl.enc"), "-out", path("ossl.dec"))
		if got, _ := os.ReadFile(path("ossl.dec")); string(got) != "投标文件: price 1,000,000" {
			t.Fatalf("decrypted OpenSSL's ciphertext: %q", got)
		}
	} else {
		t.Log("openssl not found: interoperability with OpenSSL not checked")
	}

	// Another signer ID or another file does not verify.
	var sink bytes.Buffer
	if err := run([]string{"-home", home, "verify", "-pub", path("key.pem"), "-in", path("bid.txt")}, strings.NewReader(""), &sink, &sink); err == nil {
		t.Fatal("verified under another signer ID")
	}

	// Encrypt needs no daemon: no -addr, no CA.
	var out bytes.Buffer
	if err := run([]string{"-home", home, "-daemon-dir", t.TempDir(), "encrypt", "-pub", path("key.pem"), "-in", path("bid.txt"), "-out", path("bid.enc")}, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	hufu("", "encrypt", "-key", id, "-asn1", "-in", path("bid.txt"), "-out", path("bid2.enc"))
	hufu("", "decrypt", "-key", id, "-in", path("bid.enc"), "-out", path("bid.dec"))
	if got, _ := os.ReadFile(path("bid.dec")); string(got) != "投标文件: price 1,000,000" {
		t.Fatalf("decrypted %q", got)
	}

	// Batches: several files in one call, with progress on standard error.
	write("a.txt", "document a")
	write("b.txt", "document b")
	if out := hufu("", "sign", "-key", id, path("a.txt"), path("b.txt")); !strings.Contains(out, "signing 2/2") {
		t.Fatalf("batch sign: %q", out)
	}
	hufu("", "verify", "-key", id, "-in", path("b.txt"))
	if out := hufu("", "decrypt", "-key", id, path("bid.enc"), path("bid2.enc")); !strings.Contains(out, "decrypting 2/2") {
		t.Fatalf("batch decrypt: %q", out)
	}
	if got, _ := os.ReadFile(path("bid2")); string(got) != "投标文件: price 1,000,000" {
		t.Fatalf("batch decrypted %q", got)
	}

	if out := hufu("", "key", "refresh", id); !strings.Contains(out, "share version 2, public key unchanged") {
		t.Fatalf("refresh: %q", out)
	}
	hufu("", "sign", "-key", id, "-in", path("a.txt"))
	hufu("", "verify", "-pub", path("key.pem"), "-in", path("a.txt"))

	hufu("", "pin", "change", "-key", id, "-new-pin", "864200")
	t.Setenv("HUFU_PIN", "864200")
	hufu("", "pin", "reset", "-key", id, "-phone", "13800138000", "-new-pin", "112233")
	t.Setenv("HUFU_PIN", "112233")
	hufu("", "sign", "-key", id, "-in", path("a.txt"))

	if usage := hufu("", "usage", "-key", id); !strings.Contains(usage, "keygen") || !strings.Contains(usage, "refresh.commit") {
		t.Fatalf("usage: %q", usage)
	}

	// key show -pem needs no daemon: it works from any directory with the same HOME, with
	// no daemon directory (whose CA is looked for relative to the working directory).
	t.Chdir(t.TempDir())
	out.Reset()
	if err := run([]string{"-home", home, "key", "show", "-pem", id}, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("key show -pem in another directory: %v\n%s", err, out.String())
	}
	if want, _ := os.ReadFile(path("key.pem")); out.String() != string(want) {
		t.Fatalf("key show -pem in another directory printed %q, want %q", out.String(), want)
	}

	// Keystore files are private.
	for _, f := range []string{filepath.Join(home, "device.key"), filepath.Join(home, "keys", id+".json")} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st.Mode(), err)
		}
	}
}
