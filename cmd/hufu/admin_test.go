package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/admin/adminclient"
	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// adminFixture is an appliance with configured admin tokens, one per holder, each in a
// 0600 file, and a runner of hufu admin against it.
type adminFixture struct {
	t      *testing.T
	a      *daemontest.Appliance
	url    string
	files  map[string]string // holder -> token file
	tokens map[string]string // holder -> token
	home   string
	work   string
}

// The configured holders: two security officers, an auditor, an operator, Prometheus.
var adminHolders = []struct{ name, role string }{
	{"sam", config.RoleSecurityOfficer}, {"sue", config.RoleSecurityOfficer},
	{"alice", config.RoleAuditor}, {"olga", config.RoleOperator}, {"prom", config.RoleMetricsReader},
}

func startAdminFixture(t *testing.T, mutate ...func(*config.Config)) *adminFixture {
	t.Helper()
	f := &adminFixture{t: t, files: map[string]string{}, tokens: map[string]string{}, home: t.TempDir(), work: t.TempDir()}
	var lines []config.AdminToken
	for _, h := range adminHolders {
		tok, hash, err := admin.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[h.name] = tok
		f.files[h.name] = f.writeToken(h.name, tok)
		lines = append(lines, config.AdminToken{Name: h.name, Role: h.role, SHA256: hash})
	}
	f.a = daemontest.Start(t, append([]func(*config.Config){func(c *config.Config) { c.Admin.Tokens = lines }}, mutate...)...)
	f.url = f.a.AdminURL()
	return f
}

func (f *adminFixture) writeToken(name, tok string) string {
	f.t.Helper()
	p := filepath.Join(f.work, name+".token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *adminFixture) path(name string) string { return filepath.Join(f.work, name) }

// run runs hufu admin ARGS as holder ("" for no token) with stdin, and returns standard
// output, standard error and the error.
func (f *adminFixture) run(holder, stdin string, args ...string) (string, string, error) {
	f.t.Helper()
	all := append([]string{"-home", f.home, "admin"}, args...)
	if args[0] != "restore" { // offline
		all = append(all, "-admin-url", f.url)
	}
	if holder != "" {
		all = append(all, "-token-file", f.files[holder])
	}
	var out, errOut bytes.Buffer
	err := run(all, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// ok runs hufu admin and fails the test on an error.
func (f *adminFixture) ok(holder string, args ...string) string {
	f.t.Helper()
	out, errOut, err := f.run(holder, "", args...)
	if err != nil {
		f.t.Fatalf("hufu admin %s (as %s): exit %d: %s\n%s%s", strings.Join(args, " "), holder, exitCode(err), describe(err), out, errOut)
	}
	return out
}

// fails runs hufu admin and wants exit code want.
func (f *adminFixture) fails(want int, holder string, args ...string) string {
	f.t.Helper()
	out, errOut, err := f.run(holder, "", args...)
	if got := exitCode(err); got != want {
		f.t.Fatalf("hufu admin %s (as %s): exit %d (%v), want %d\n%s%s", strings.Join(args, " "), holder, got, err, want, out, errOut)
	}
	return describe(err)
}

// waitReady runs admin ready until the appliance is ready (its health monitor has probed
// the HSM and the store).
func (f *adminFixture) waitReady() string {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, errOut, err := f.run("olga", "", "ready")
		if err == nil {
			return out
		}
		if exitCode(err) != exitUnavailable || time.Now().After(deadline) {
			f.t.Fatalf("admin ready: exit %d: %v\n%s%s", exitCode(err), err, out, errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jsonOf(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
}

// TestAdminCLI runs every admin verb against a real appliance, as the holders the admin
// surface's roles are for.
func TestAdminCLI(t *testing.T) {
	f := startAdminFixture(t)

	// Readiness: the checks, with or without a token; -o json.
	if out := f.waitReady(); !strings.Contains(out, "[+]hsm ok") || !strings.Contains(out, "[+]store ok") {
		t.Fatalf("ready: %q", out)
	}
	if out := f.ok("", "ready"); !strings.Contains(out, "[+]hsm ok") {
		t.Fatalf("ready without a token: %q", out)
	}
	var ready struct {
		Ready bool     `json:"ready"`
		Lines []string `json:"lines"`
	}
	if jsonOf(t, f.ok("", "ready", "-o", "json"), &ready); !ready.Ready || len(ready.Lines) < 3 {
		t.Fatalf("ready -o json: %+v", ready)
	}

	// Metrics: Prometheus's token; the text, or the families as JSON.
	if out := f.ok("prom", "metrics"); !strings.Contains(out, "hufu_ready 1") {
		t.Fatalf("metrics: %.300q", out)
	}
	var fams map[string]json.RawMessage
	if jsonOf(t, f.ok("prom", "metrics", "-o", "json"), &fams); fams["hufu_ready"] == nil {
		t.Fatalf("metrics -o json lacks hufu_ready: %d families", len(fams))
	}
	f.fails(exitAuth, "alice", "metrics") // an auditor may not
	f.fails(exitUsage, "", "metrics")     // no token at all: said before any request
	f.fails(exitUsage, "sam", "metrics", "extra")
	f.fails(exitUsage, "sam", "metrics", "-nope")

	// Tokens: create (shown once, on standard output only), use, list, revoke, refused after.
	out, errOut, err := f.run("sam", "", "token", "create", "-name", "ci", "-role", "operator", "-expires-in", "1h")
	if err != nil || !regexp.MustCompile(`^hufu_admin_\S+\n$`).MatchString(out) || !strings.Contains(errOut, "shown once") || strings.Contains(errOut, "hufu_admin_") {
		t.Fatalf("token create: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	f.files["ci"] = f.writeToken("ci", strings.TrimSpace(out))
	if out := f.ok("ci", "system-client", "list"); !strings.Contains(out, "NAME") {
		t.Fatalf("system-client list as the new token: %q", out)
	}
	if out := f.ok("sam", "token", "list"); !regexp.MustCompile(`(?m)^ci\s+operator\s+online\s+active`).MatchString(out) || !strings.Contains(out, "sue") {
		t.Fatalf("token list: %q", out)
	}
	var tl struct{ Tokens []adminclient.TokenInfo }
	if jsonOf(t, f.ok("sam", "token", "list", "-o", "json"), &tl); len(tl.Tokens) != len(adminHolders)+1 {
		t.Fatalf("token list -o json: %+v", tl)
	}
	// -out: into a new 0600 file, the token not printed; not over an existing file.
	if out := f.ok("sam", "token", "create", "-name", "ci2", "-role", "auditor", "-out", f.path("ci2.token")); strings.Contains(out, "hufu_admin_") || !strings.Contains(out, "wrote the token of ci2") {
		t.Fatalf("token create -out printed %q", out)
	}
	if st, err := os.Stat(f.path("ci2.token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	f.fails(exitError, "sam", "token", "create", "-name", "ci3", "-role", "auditor", "-out", f.path("ci2.token"))
	f.fails(exitConflict, "sam", "token", "create", "-name", "ci", "-role", "operator") // the name is taken
	f.fails(exitInvalid, "sam", "token", "create", "-name", "ci4", "-role", "janitor")
	f.fails(exitUsage, "sam", "token", "create", "-role", "operator")
	f.fails(exitAuth, "olga", "token", "list")
	if out := f.ok("sam", "token", "revoke", "ci"); !strings.Contains(out, "revoked token ci") {
		t.Fatalf("revoke: %q", out)
	}
	if msg := f.fails(exitAuth, "ci", "system-client", "list"); !strings.Contains(msg, "401") || !strings.Contains(msg, "request id") {
		t.Fatalf("a revoked token: %s", msg)
	}
	f.fails(exitNotFound, "sam", "token", "revoke", "nobody")

	// The token from the environment: HUFU_ADMIN_TOKEN, HUFU_ADMIN_TOKEN_FILE, not both.
	t.Setenv("HUFU_ADMIN_TOKEN", f.tokens["olga"])
	f.ok("", "system-client", "list")
	t.Setenv("HUFU_ADMIN_TOKEN_FILE", f.files["alice"])
	f.fails(exitUsage, "", "system-client", "list")
	t.Setenv("HUFU_ADMIN_TOKEN", "")
	f.ok("", "audit", "checkpoints") // alice's, from the file
	t.Setenv("HUFU_ADMIN_TOKEN_FILE", "")
	t.Setenv("HUFU_ADMIN_URL", f.url)
	var out2 bytes.Buffer
	if err := run([]string{"-home", f.home, "admin", "ready"}, strings.NewReader(""), &out2, &out2); err != nil {
		t.Fatalf("ready at HUFU_ADMIN_URL: %v\n%s", err, out2.String())
	}
	t.Setenv("HUFU_ADMIN_URL", "")

	// A security_officer token waits for a second officer: the approval flow.
	out, errOut, err = f.run("sam", "", "token", "create", "-name", "sam2", "-role", "security_officer")
	if err != nil || !strings.Contains(errOut, "second security officer approves request") {
		t.Fatalf("security_officer token: %v\n%s%s", err, out, errOut)
	}
	var pending struct{ Approvals []adminclient.Approval }
	jsonOf(t, f.ok("sue", "approval", "list", "-state", "pending", "-o", "json"), &pending)
	if len(pending.Approvals) != 1 || pending.Approvals[0].TokenName != "sam2" {
		t.Fatalf("pending approvals: %+v", pending)
	}
	id := pending.Approvals[0].ID
	if out := f.ok("sue", "approval", "list"); !strings.Contains(out, id) || !strings.Contains(out, "token sam2") {
		t.Fatalf("approval list: %q", out)
	}
	if msg := f.fails(exitAuth, "sam", "approval", "approve", id); !strings.Contains(msg, "second security officer") {
		t.Fatalf("approved by the asker: %s", msg)
	}
	if out := f.ok("sue", "approval", "approve", id); !strings.Contains(out, "approved "+id) || !strings.Contains(out, "token sam2: active") {
		t.Fatalf("approve: %q", out)
	}
	f.fails(exitConflict, "sue", "approval", "approve", id)
	f.fails(exitInvalid, "sue", "approval", "list", "-state", "bogus")

	// System clients: a business system at once, with its development certificate; a desk
	// after a second officer's approval, the certificate to the approver.
	out = f.ok("sam", "system-client", "register", "platform-1", "-service", "ScanService", "-cert-out", f.path("p1.pem"), "-key-out", f.path("p1-key.pem"))
	if !strings.Contains(out, "registered system client platform-1 for hufu.v1.ScanService") || !strings.Contains(out, "p1-key.pem (0600)") {
		t.Fatalf("register: %q", out)
	}
	checkIssued(t, f.path("p1.pem"), f.path("p1-key.pem"))
	out = f.ok("sam", "system-client", "register", "desk-1", "-service", "hufu.v1.ReviewService")
	m := regexp.MustCompile(`pending: request (\S+) waits for a second security officer`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("register a desk: %q", out)
	}
	var dec adminclient.Decision
	jsonOf(t, f.ok("sue", "approval", "approve", m[1], "-cert-out", f.path("d1.pem"), "-key-out", f.path("d1-key.pem"), "-o", "json"), &dec)
	if dec.Client == nil || dec.Client.Name != "desk-1" || dec.Certificate == nil || dec.Certificate.KeyPEM != "" || dec.Approval.DecidedBy != "sue" {
		t.Fatalf("approve a desk -o json (the key only in its file): %+v", dec)
	}
	checkIssued(t, f.path("d1.pem"), f.path("d1-key.pem"))
	var cl struct{ Clients []adminclient.SystemClient }
	jsonOf(t, f.ok("olga", "system-client", "list", "-o", "json"), &cl)
	names := map[string]bool{}
	for _, c := range cl.Clients {
		names[c.Name] = true
	}
	if !names["platform-1"] || !names["desk-1"] {
		t.Fatalf("system-client list -o json: %+v", cl)
	}
	if out := f.ok("olga", "system-client", "list"); !regexp.MustCompile(`(?m)^desk-1\s+registered\s+hufu.v1.ReviewService\s+review\s+sue`).MatchString(out) {
		t.Fatalf("system-client list: %q", out)
	}
	// A request withdrawn by the one who asked.
	out = f.ok("sam", "system-client", "register", "desk-2", "-service", "ReconciliationService")
	if m = regexp.MustCompile(`pending: request (\S+) `).FindStringSubmatch(out); m == nil {
		t.Fatalf("register a desk: %q", out)
	}
	if out := f.ok("sam", "approval", "reject", m[1]); !strings.Contains(out, "rejected "+m[1]) {
		t.Fatalf("reject: %q", out)
	}
	f.fails(exitConflict, "sue", "approval", "approve", m[1])
	f.fails(exitError, "sam", "system-client", "register", "platform-2", "-service", "ScanService", "-cert-out", f.path("p1.pem")) // exists: refused before
	f.fails(exitInvalid, "sam", "system-client", "register", "x1", "-service", "AccountService")
	f.fails(exitConflict, "sam", "system-client", "register", "platform-1", "-service", "ScanService", "-cert-out", f.path("again.pem"), "-key-out", f.path("again-key.pem"))
	f.fails(exitUsage, "sam", "system-client", "register", "x2")
	f.fails(exitAuth, "olga", "system-client", "remove", "platform-1")
	if out := f.ok("sam", "system-client", "remove", "platform-1"); !strings.Contains(out, "removed system client platform-1") {
		t.Fatalf("remove: %q", out)
	}
	f.fails(exitNotFound, "sam", "system-client", "remove", "platform-1")

	// Audit: the public key, an export verified offline, tampering named; admin audit verify.
	f.ok("olga", "audit", "public-key", "-o", f.path("audit.pem"))
	if pem := f.ok("alice", "audit", "public-key"); !strings.Contains(pem, "BEGIN PUBLIC KEY") {
		t.Fatalf("public-key: %q", pem)
	}
	f.fails(exitError, "alice", "audit", "public-key", "-o", f.path("audit.pem")) // kept, not overwritten
	if out := f.ok("alice", "audit", "export", "-o", f.path("audit.jsonl")); !strings.Contains(out, "wrote") {
		t.Fatalf("export: %q", out)
	}
	f.fails(exitError, "alice", "audit", "export", "-o", f.path("audit.jsonl"))
	f.fails(exitAuth, "olga", "audit", "export", "-o", f.path("olga.jsonl"))
	if _, err := os.Stat(f.path("olga.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused export left a file: %v", err)
	}
	var sink bytes.Buffer
	if err := run([]string{"-home", f.home, "audit", "verify", "-log", f.path("audit.jsonl"), "-key", f.path("audit.pem")}, strings.NewReader(""), &sink, &sink); err != nil ||
		!strings.Contains(sink.String(), "audit log verifies") {
		t.Fatalf("offline verify of the export: %v\n%s", err, sink.String())
	}
	export, _ := os.ReadFile(f.path("audit.jsonl"))
	tampered := strings.Replace(string(export), `"token":"sue"`, `"token":"sam"`, 1)
	if tampered == string(export) {
		t.Fatal("nothing to tamper with in the export")
	}
	_ = os.WriteFile(f.path("tampered.jsonl"), []byte(tampered), 0o600)
	sink.Reset()
	if err := run([]string{"-home", f.home, "audit", "verify", "-log", f.path("tampered.jsonl"), "-key", f.path("audit.pem")}, strings.NewReader(""), &sink, &sink); err == nil ||
		!strings.Contains(err.Error(), "does NOT verify") || exitCode(err) != exitError {
		t.Fatalf("tampered export: %v", err)
	}
	if out := f.ok("alice", "audit", "verify", "-key", f.path("audit.pem"), "-export", f.path("kept.jsonl")); !strings.Contains(out, "audit log verifies: records 1..") {
		t.Fatalf("admin audit verify: %q", out)
	}
	if st, err := os.Stat(f.path("kept.jsonl")); err != nil || st.Size() == 0 {
		t.Fatalf("admin audit verify -export: %v", err)
	}
	out, errOut, err = f.run("alice", "", "audit", "verify")
	if err != nil || !strings.Contains(out, "audit log verifies") || !strings.Contains(errOut, "the key the appliance serves now") {
		t.Fatalf("admin audit verify with the served key: %v\n%s%s", err, out, errOut)
	}
	// Another key: the log does not verify.
	other := startAdminFixture(t)
	other.ok("alice", "audit", "public-key", "-o", f.path("other.pem"))
	if msg := f.fails(exitError, "alice", "audit", "verify", "-key", f.path("other.pem")); !strings.Contains(msg, "does NOT verify") {
		t.Fatalf("verify under another key: %s", msg)
	}
	if out := f.ok("alice", "audit", "export", "-o", f.path("part.jsonl"), "-from", "2", "-to", "5"); !strings.Contains(out, "wrote") {
		t.Fatalf("range export: %q", out)
	}
	var cks struct{ Checkpoints []adminclient.Checkpoint }
	if jsonOf(t, f.ok("alice", "audit", "checkpoints", "-o", "json"), &cks); len(cks.Checkpoints) == 0 {
		t.Fatalf("checkpoints: %+v", cks)
	}
	if out := f.ok("alice", "audit", "checkpoints", "-limit", "1"); !strings.Contains(out, "SIZE") {
		t.Fatalf("checkpoints: %q", out)
	}

	// The CRL, public.
	if out := f.ok("", "crl", "hufu-ca", "-o", f.path("hufu-ca.crl")); !strings.Contains(out, "CRL of hufu-ca") {
		t.Fatalf("crl: %q", out)
	}
	der, _ := os.ReadFile(f.path("hufu-ca.crl"))
	if _, err := x509.ParseRevocationList(der); err != nil {
		t.Fatalf("crl: %v", err)
	}
	f.ok("", "crl", "hufu-ca", "-o", f.path("hufu-ca.crl")) // a mirror replaces it
	f.fails(exitNotFound, "", "crl", "no-such-ca", "-o", f.path("x.crl"))
	f.fails(exitUsage, "", "crl", "hufu-ca")

	// KEK rotation: status, rotate (waiting for the rewrap), finish after a confirmation.
	var st adminclient.KEKStatus
	if jsonOf(t, f.ok("sam", "kek", "status", "-o", "json"), &st); len(st.KEKs) != 1 {
		t.Fatalf("kek status: %+v", st)
	}
	kekPoll = 10 * time.Millisecond
	if out := f.ok("sam", "kek", "rotate", "-wait"); !strings.Contains(out, "state    rewrapped") {
		t.Fatalf("kek rotate -wait: %q", out)
	}
	if out := f.ok("sam", "kek", "status"); !strings.Contains(out, "(current)") || !strings.Contains(out, "v2") {
		t.Fatalf("kek status: %q", out)
	}
	f.fails(exitAuth, "alice", "kek", "status")
	out, errOut, err = f.run("sam", "no\n", "kek", "finish")
	if exitCode(err) != exitError || !strings.Contains(describe(err), "nothing destroyed") || !strings.Contains(errOut, "Type yes") {
		t.Fatalf("kek finish, not confirmed: %v\n%s%s", err, out, errOut)
	}
	if _, _, err := f.run("sam", "", "kek", "finish"); exitCode(err) != exitUsage {
		t.Fatalf("kek finish with nothing on standard input: %v", err)
	}
	if jsonOf(t, f.ok("sam", "kek", "status", "-o", "json"), &st); len(st.KEKs) != 2 {
		t.Fatalf("kek status after a refused finish: %+v", st)
	}
	out, errOut, err = f.run("sam", "yes\n", "kek", "finish")
	if err != nil || !strings.Contains(out, "destroyed hufu-kek-v1") {
		t.Fatalf("kek finish: %v\n%s%s", err, out, errOut)
	}
	if jsonOf(t, f.ok("sam", "kek", "status", "-o", "json"), &st); len(st.KEKs) != 1 || st.State != "finished" {
		t.Fatalf("kek status after the finish: %+v", st)
	}
	if out := f.ok("sam", "kek", "finish", "-yes"); !strings.Contains(out, "destroyed -;") { // nothing left to destroy
		t.Fatalf("kek finish again: %q", out)
	}
	// The erasure: asks first, then v2 is destroyed and v3 current, and it says what that
	// means for backups.
	if _, _, err := f.run("sam", "no\n", "kek", "erase"); err == nil {
		t.Fatal("kek erase not confirmed: no error")
	}
	out, errOut, err = f.run("sam", "yes\n", "kek", "erase")
	if err != nil || !strings.Contains(out, "destroyed hufu-kek-v2") || !strings.Contains(out, "under hufu-kek-v3") ||
		!strings.Contains(errOut, "backups taken before this erasure can no longer be restored") {
		t.Fatalf("kek erase: %v\n%s%s", err, out, errOut)
	}
	if out := f.ok("sam", "kek", "status"); !strings.Contains(out, "erasure  last 20") {
		t.Fatalf("kek status after an erasure: %q", out)
	}

	// Unreachable: exit 6.
	f.url = "http://127.0.0.1:1"
	f.fails(exitUnavailable, "", "ready")
	f.url = "ftp://127.0.0.1:1"
	f.fails(exitUsage, "", "ready")
}

// checkIssued checks an issued development certificate and its 0600 key.
func checkIssued(t *testing.T, certFile, keyFile string) {
	t.Helper()
	cert, err := os.ReadFile(certFile)
	if err != nil || !strings.Contains(string(cert), "BEGIN CERTIFICATE") {
		t.Fatalf("%s: %v", certFile, err)
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", keyFile, st, err)
	}
	if key, _ := os.ReadFile(keyFile); !strings.Contains(string(key), "PRIVATE KEY") {
		t.Fatalf("%s holds no private key", keyFile)
	}
}

// TestAdminCARevokeCLI: hufu admin ca revoke asks, the approval verbs list and decide it,
// refusals exit by their class.
func TestAdminCARevokeCLI(t *testing.T) {
	f := startAdminFixture(t)
	f.waitReady()
	f.fails(exitUsage, "sam", "ca", "revoke", "-ca", "hufu-ca")
	f.fails(exitUsage, "sam", "ca", "revoke", "-reason", "keyCompromise")
	if msg := f.fails(exitInvalid, "sam", "ca", "revoke", "-ca", "hufu-ca", "-reason", "compromised"); !strings.Contains(msg, "reason: want keyCompromise") {
		t.Fatalf("a bad reason: %s", msg)
	}
	f.fails(exitNotFound, "sam", "ca", "revoke", "-ca", "no-such-ca", "-reason", "keyCompromise")
	f.fails(exitAuth, "olga", "ca", "revoke", "-ca", "hufu-ca", "-reason", "keyCompromise")
	out := f.ok("sam", "ca", "revoke", "-ca", "hufu-ca", "-reason", "keyCompromise")
	m := regexp.MustCompile(`pending: request (\S+) to revoke the issuing CA of hufu-ca \(keyCompromise\) waits for a second security officer`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ca revoke: %q", out)
	}
	if out := f.ok("sue", "approval", "list", "-state", "pending"); !strings.Contains(out, m[1]) || !strings.Contains(out, "revoke the issuing CA of hufu-ca (keyCompromise)") {
		t.Fatalf("approval list: %q", out)
	}
	if msg := f.fails(exitAuth, "sam", "approval", "approve", m[1]); !strings.Contains(msg, "second security officer") {
		t.Fatalf("approved by the asker: %s", msg)
	}
	if out := f.ok("sue", "approval", "approve", m[1]); !strings.Contains(out, "revoked the issuing CA of hufu-ca") || !strings.Contains(out, "published root CRL number") {
		t.Fatalf("approve: %q", out)
	}
	f.fails(exitConflict, "sam", "ca", "revoke", "-ca", "hufu-ca", "-reason", "superseded")
}

// TestAdminBackupAndRestore takes a backup with the CLI (encrypted, checked complete),
// restores it through the HSM (daemon.Restore, what hufud restore runs) into a fresh data
// directory and opens the appliance on it: what was registered before is there and the
// audit log verifies under the key kept before.
func TestAdminBackupAndRestore(t *testing.T) {
	f := startAdminFixture(t)
	f.waitReady()
	f.ok("sam", "system-client", "register", "platform-1", "-service", "ScanService", "-cert-out", f.path("p1.pem"), "-key-out", f.path("p1-key.pem"))
	f.ok("alice", "audit", "public-key", "-o", f.path("audit.pem"))

	archive := f.path("hufu.hufubak")
	f.fails(exitAuth, "alice", "backup", "-o", archive)
	if _, err := os.Stat(archive); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused backup left a file: %v", err)
	}
	if out := f.ok("sam", "backup", "-o", archive); !regexp.MustCompile(`wrote .*hufu.hufubak: backup hufu-backup-\S+, \d+ bytes, encrypted under a data key wrapped by hufu-kek-v1; restore it with hufud restore`).MatchString(out) {
		t.Fatalf("backup: %q", out)
	}
	st, err := os.Stat(archive)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	f.fails(exitError, "sam", "backup", "-o", archive) // never overwritten
	if st2, _ := os.Stat(archive); st2.Size() != st.Size() || !st2.ModTime().Equal(st.ModTime()) {
		t.Fatal("the existing backup was touched")
	}
	f.fails(exitUsage, "sam", "backup")
	// To standard output, for a pipe into an encryption tool.
	out, _, err := f.run("sam", "", "backup", "-o", "-")
	if err != nil {
		t.Fatalf("backup -o -: %v", err)
	}
	if h, n, err := backup.CheckFraming(strings.NewReader(out)); err != nil || h.KEK != "hufu-kek-v1" || n != int64(len(out)) {
		t.Fatalf("backup -o -: %v %+v", err, h)
	}
	// Cut short, it is refused, and by the CLI removed.
	if _, _, err := backup.CheckFraming(strings.NewReader(out[:len(out)-len(out)%(backup.DefaultChunkSize+16)])); !errors.Is(err, backup.ErrTruncated) {
		t.Fatalf("a backup cut at a chunk boundary: %v", err)
	}
	// The auditor's head after the backup: the restored log cannot match it.
	headAfter := regexp.MustCompile(`(?m)^head (\d+:[0-9a-f]{64})$`).FindStringSubmatch(f.ok("alice", "audit", "verify", "-key", f.path("audit.pem")))
	if headAfter == nil {
		t.Fatal("admin audit verify printed no head")
	}
	f.a.Stop()

	// Restore into a fresh data directory holding only the TLS material (configuration, not
	// data), then start the appliance there.
	fresh := t.TempDir()
	if err := os.CopyFS(filepath.Join(fresh, "tls"), os.DirFS(filepath.Join(f.a.Config.DataDir, "tls"))); err != nil {
		t.Fatal(err)
	}
	restore := func() error {
		in, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		cfg := f.a.Config
		cfg.DataDir = fresh
		_, err = daemon.Restore(context.Background(), cfg, in, "operator:olga")
		return err
	}
	if err := restore(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if st, err := os.Stat(filepath.Join(fresh, "store")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("restored store: %v %v", st, err)
	}
	if entries, _ := filepath.Glob(filepath.Join(fresh, ".restore-*")); len(entries) != 0 {
		t.Fatalf("scratch left behind: %v", entries)
	}
	if err := restore(); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over a store: %v", err)
	}
	f.a.Config.DataDir = fresh
	// The restore is in the restored log; the HSM's audit anchor is past the backup (the
	// stop after it was checkpointed), so the daemon serves it only once acknowledged.
	ack, err := daemon.AcknowledgeRestore(context.Background(), f.a.Config, "operator:olga")
	if err != nil || !ack.Needed {
		t.Fatalf("acknowledge the restore: %+v, %v", ack, err)
	}
	f.a.Restart()
	f.url = f.a.AdminURL()
	f.waitReady()
	var cl struct{ Clients []adminclient.SystemClient }
	jsonOf(t, f.ok("olga", "system-client", "list", "-o", "json"), &cl)
	found := false
	for _, c := range cl.Clients {
		found = found || c.Name == "platform-1"
	}
	if !found {
		t.Fatalf("the restored appliance lacks platform-1: %+v", cl)
	}
	if out := f.ok("alice", "audit", "verify", "-key", f.path("audit.pem"), "-export", f.path("restored.jsonl")); !strings.Contains(out, "audit log verifies: records 1..") {
		t.Fatalf("restored audit log: %q", out)
	}
	if msg := f.fails(exitError, "alice", "audit", "verify", "-key", f.path("audit.pem"), "-head", headAfter[1]); !strings.Contains(msg, "does NOT verify") {
		t.Fatalf("the restored log passed with a head saved after the backup: %s", msg)
	}
	exported, err := os.ReadFile(f.path("restored.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	restored := regexp.MustCompile(`"actor":"operator:olga","action":"store.restore","subject":"hufu-backup-[^"]+","outcome":"ok","details":\{[^}]*"restored_head":"(\d+)"`).FindSubmatch(exported)
	if restored == nil || !bytes.Contains(exported, []byte(`"actor":"operator:olga","action":"store.restore.acknowledge"`)) {
		t.Fatalf("the restored log lacks the restore or its acknowledgement:\n%s", exported)
	}
}

// TestAdminOverTLS: an https admin listener with -admin-ca (or HUFU_ADMIN_CA); without the
// CA the listener's certificate is not trusted.
func TestAdminOverTLS(t *testing.T) {
	f := startAdminFixture(t, func(c *config.Config) {
		files := devpki.FilesIn(filepath.Join(c.DataDir, "tls"))
		c.Admin.CertFile, c.Admin.KeyFile = files.ServerCert, files.ServerKey
	})
	f.url = "https://" + f.a.Daemon.AdminAddr().String()
	f.fails(exitError, "olga", "system-client", "list") // the system roots do not know the development CA
	t.Setenv("HUFU_ADMIN_CA", filepath.Join(f.a.Config.DataDir, "tls", "ca.pem"))
	f.waitReady()
	f.ok("olga", "system-client", "list")
}

// TestAdminExitCodes: the admin surface's refusals by HTTP status, wrapped or not, and an
// unreachable listener.
func TestAdminExitCodes(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"401", &adminclient.Error{Status: 401}, exitAuth},
		{"403", &adminclient.Error{Status: 403}, exitAuth},
		{"404", &adminclient.Error{Status: 404}, exitNotFound},
		{"409", &adminclient.Error{Status: 409}, exitConflict},
		{"400", &adminclient.Error{Status: 400}, exitInvalid},
		{"500", &adminclient.Error{Status: 500}, exitUnavailable},
		{"503", &adminclient.Error{Status: 503}, exitUnavailable},
		{"429", &adminclient.Error{Status: 429}, exitUnavailable},
		{"418", &adminclient.Error{Status: 418}, exitError},
		{"wrapped with the request id", withRequestID(&adminclient.Error{Status: 403, RequestID: "r1"}), exitAuth},
		{"wrapped", fmt.Errorf("revoke: %w", &adminclient.Error{Status: 404}), exitNotFound},
		{"unreachable", fmt.Errorf("adminclient: GET /readyz: %w", &url.Error{Op: "Get", URL: "http://x", Err: opErr}), exitUnavailable},
		{"a local file", &os.PathError{Op: "open", Path: "x", Err: os.ErrNotExist}, exitError},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
	if msg := withRequestID(&adminclient.Error{Status: 403, Message: "role not allowed", RequestID: "r1"}).Error(); !strings.Contains(msg, "(request id r1)") {
		t.Errorf("request id not in %q", msg)
	}
}

// TestAdminHelp: every admin command is in the tree TestHelpEverywhere walks (which checks
// -h and --help on each), and -h exits 0 on each here too.
func TestAdminHelp(t *testing.T) {
	have := map[string]bool{}
	walk((&cli{}).commands(), nil, func(p []string) { have[strings.Join(p, " ")] = true })
	for _, p := range []string{
		"admin", "admin ready", "admin metrics", "admin token list", "admin token create", "admin token revoke",
		"admin approval list", "admin approval approve", "admin approval reject",
		"admin system-client list", "admin system-client register", "admin system-client remove",
		"admin audit export", "admin audit checkpoints", "admin audit public-key", "admin audit verify",
		"admin backup", "admin kek status", "admin kek rotate", "admin kek finish", "admin kek erase", "admin crl",
		"admin ca revoke",
	} {
		if !have[p] {
			t.Errorf("%s is not in the command tree", p)
			continue
		}
		var out bytes.Buffer
		if err := run(append(strings.Fields(p), "-h"), strings.NewReader(""), &out, &out); err != nil || !strings.Contains(out.String(), "hufu "+p) {
			t.Errorf("hufu %s -h: %v\n%s", p, err, out.String())
		}
	}
}
