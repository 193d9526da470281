package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// adminAppliance is an in-process appliance (harness_test.go) with its admin surface on a
// loopback port and one token per role, and a second security officer (secondOfficer).
type adminAppliance struct {
	*appliance
	d        *daemon.Daemon
	adminURL string
	tokens   map[admin.Role]string
	http     *http.Client
	// storeFS, if set, is the filesystem under the store (daemon.Options.StoreFS).
	storeFS vfs.FS
}

func startAdminAppliance(t *testing.T, mutate func(*config.Config)) *adminAppliance {
	t.Helper()
	a := newAdminAppliance(t, mutate)
	a.start()
	t.Cleanup(func() { a.stop() })
	return a
}

// newAdminAppliance initialises an appliance (hufud init) without starting it.
func newAdminAppliance(t *testing.T, mutate func(*config.Config)) *adminAppliance {
	t.Helper()
	tokens := map[admin.Role]string{}
	var lines []config.AdminToken
	for key, holder := range map[admin.Role]struct {
		name string
		role admin.Role
	}{
		admin.Operator: {"olga", admin.Operator}, admin.Auditor: {"alice", admin.Auditor},
		admin.SecurityOfficer: {"sam", admin.SecurityOfficer}, admin.MetricsReader: {"prom", admin.MetricsReader},
		secondOfficer: {"sue", admin.SecurityOfficer},
	} {
		tok, hash, err := admin.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[key] = tok
		lines = append(lines, config.AdminToken{Name: holder.name, Role: string(holder.role), SHA256: hash})
	}
	tok := softhsmtest.New(t)
	cfg := config.Development()
	cfg.DataDir = t.TempDir()
	cfg.Listen.GRPC, cfg.Admin.Listen, cfg.Listen.PKI, cfg.Listen.JSON = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.Tokens = lines
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PINFile = tok.ModulePath, tok.Label, tok.PINFile
	cfg.Platforms = []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.Resolve(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.Init(context.Background(), cfg, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := &adminAppliance{
		appliance: &appliance{t: t, cfg: cfg, clock: daemontest.NewClock(time.Now().UTC().Truncate(time.Second))},
		tokens:    tokens, http: &http.Client{Timeout: time.Minute},
	}
	return a
}

// start opens and serves the daemon on a.cfg, keeping the daemon to learn its admin
// address (the harness's start does not).
func (a *adminAppliance) start() {
	t := a.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Open(ctx, a.cfg, daemon.Options{
		Clock: a.clock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealthInterval: 20 * time.Millisecond,
		StoreFS: a.storeFS,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	addr, err := d.Listen()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a.d, a.addr, a.adminURL = d, addr.String(), "http://"+d.AdminAddr().String()
	if a.cfg.Admin.CertFile != "" {
		a.adminURL = "https://" + d.AdminAddr().String()
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "tls", "ca.pem"))
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			cancel()
			t.Fatalf("development CA: %v", err)
		}
		a.http = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	}
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, nil) }()
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	// Ready once the health monitor has probed the HSM and the store.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := a.http.Get(a.adminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the appliance does not become ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// secondOfficer is the key in adminAppliance.tokens of a second security officer, "sue"
// ("sam" is admin.SecurityOfficer).
const secondOfficer admin.Role = "second-officer"

func (a *adminAppliance) restart() {
	a.stop()
	a.start()
}

// call makes an admin request with the token of role ("" for none, "wrong" for an
// unknown token) and returns the status and body.
func (a *adminAppliance) call(method, path string, role admin.Role) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.adminURL+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	switch role {
	case "":
	case "wrong":
		req.Header.Set("Authorization", "Bearer hufu_admin_not-a-configured-token")
	default:
		req.Header.Set("Authorization", "Bearer "+a.tokens[role])
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp.StatusCode, body
}

func (a *adminAppliance) auditKey() *ecdsa.PublicKey {
	a.t.Helper()
	code, body := a.call("GET", "/audit/public-key", admin.Auditor)
	if code != http.StatusOK {
		a.t.Fatalf("public key: %d %s", code, body)
	}
	block, _ := pem.Decode(body)
	if block == nil {
		a.t.Fatalf("public key is not PEM: %q", body)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		a.t.Fatal(err)
	}
	return k.(*ecdsa.PublicKey)
}

func (a *adminAppliance) export() []byte {
	a.t.Helper()
	code, body := a.call("GET", "/audit/export", admin.Auditor)
	if code != http.StatusOK {
		a.t.Fatalf("export: %d %s", code, body)
	}
	return body
}

// records decodes the record lines of an export.
func records(t *testing.T, export []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(export), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == "record" {
			out = append(out, m)
		}
	}
	return out
}

func TestAdminRoleMatrix(t *testing.T) {
	a := startAdminAppliance(t, nil)
	all := []admin.Role{admin.Operator, admin.Auditor, admin.SecurityOfficer}
	so := []admin.Role{admin.SecurityOfficer}
	cases := []struct {
		method, path string
		allowed      []admin.Role // nil: no token needed
	}{
		{"GET", "/livez", nil},
		{"GET", "/readyz", nil},
		{"GET", "/metrics", []admin.Role{admin.Operator, admin.SecurityOfficer, admin.MetricsReader}},
		{"GET", "/audit/export", []admin.Role{admin.Auditor, admin.SecurityOfficer}},
		{"GET", "/audit/checkpoints", []admin.Role{admin.Auditor, admin.SecurityOfficer}},
		{"GET", "/audit/public-key", all},
		{"POST", "/backup", so},
		{"GET", "/tokens", so},
		{"POST", "/tokens", so},
		{"DELETE", "/tokens/nobody", so},
		{"GET", "/approvals", so},
		{"POST", "/approvals/0123456789abcdef/approve", so},
		{"POST", "/approvals/0123456789abcdef/reject", so},
		{"GET", "/system-clients", []admin.Role{admin.Operator, admin.SecurityOfficer}},
		{"POST", "/system-clients", so},
		{"DELETE", "/system-clients/nobody", so},
		{"GET", "/kek", []admin.Role{admin.SecurityOfficer}},
		{"POST", "/kek/rotate", []admin.Role{admin.SecurityOfficer}},
		{"POST", "/kek/finish", []admin.Role{admin.SecurityOfficer}},
		{"POST", "/kek/erase", []admin.Role{admin.SecurityOfficer}},
		{"GET", "/debug/pprof/", []admin.Role{admin.SecurityOfficer}},
		{"GET", "/debug/pprof/cmdline", []admin.Role{admin.SecurityOfficer}},
	}
	for _, c := range cases {
		for _, caller := range []admin.Role{"", "wrong", admin.Operator, admin.Auditor, admin.SecurityOfficer, admin.MetricsReader} {
			name := string(caller)
			if name == "" {
				name = "no-token"
			}
			t.Run(c.method+c.path+"/"+name, func(t *testing.T) {
				if caller == "" || caller == "wrong" {
					// A fresh window: past a few failures an address is answered 429
					// (TestAdminAuthFailuresAreLimited).
					a.clock.Advance(time.Minute)
				}
				code, body := a.call(c.method, c.path, caller)
				switch {
				case c.allowed == nil:
					if code != http.StatusOK {
						t.Fatalf("got %d %s, want 200", code, body)
					}
				case caller == "" || caller == "wrong":
					if code != http.StatusUnauthorized {
						t.Fatalf("got %d %s, want 401", code, body)
					}
				case !contains(c.allowed, caller):
					if code != http.StatusForbidden {
						t.Fatalf("got %d %s, want 403", code, body)
					}
				default:
					// Allowed: the endpoint's own answer (a finish may race the rotation's
					// job and be told to wait; an empty body is a 400, an unknown name a
					// 404), never an authorisation failure.
					if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
						t.Fatalf("got %d %s, want the endpoint's answer", code, body)
					}
				}
			})
		}
	}

	// Refusals and actions are audited with the role and the token's name, never the token.
	exp := a.export()
	for _, tok := range a.tokens {
		if bytes.Contains(exp, []byte(tok)) {
			t.Fatal("a token appears in the audit log")
		}
	}
	var deniedBackup, deniedOperatorBackup, rotated bool
	for _, r := range records(t, exp) {
		d, _ := r["details"].(map[string]any)
		if r["action"] == "admin.backup" && r["outcome"] == "denied" && r["actor"] == "admin:alice" && d["role"] == "auditor" && d["token"] == "alice" {
			deniedBackup = true
		}
		if r["action"] == "admin.backup" && r["outcome"] == "denied" && r["actor"] == "admin:olga" && d["reason"] == "role not allowed" {
			deniedOperatorBackup = true
		}
		if r["action"] == "admin.kek.rotate" && r["outcome"] == "ok" && r["actor"] == "admin:sam" && d["role"] == "security_officer" {
			rotated = true
		}
	}
	if !deniedBackup || !deniedOperatorBackup || !rotated {
		t.Fatalf("audit log lacks the auditor's (%v) or the operator's (%v) refused backup or the officer's rotation (%v)", deniedBackup, deniedOperatorBackup, rotated)
	}
}

func contains(roles []admin.Role, r admin.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func TestAdminMetricsAfterTraffic(t *testing.T) {
	a := startAdminAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-metrics-1", "123456")
	if _, err := pk.signer().Sign(rand.Reader, []byte("bid"), signerOpts); err != nil {
		t.Fatal(err)
	}
	// A wrong PIN five times locks the key: the lockout counter moves.
	for range 5 {
		_, _ = pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "000000"})
	}
	a.call("GET", "/audit/export", admin.Auditor) // a checkpoint, for the age gauge

	code, body := a.call("GET", "/metrics", admin.Operator)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the Prometheus text parser rejects /metrics: %v", err)
	}
	for _, name := range []string{
		"hufu_build_info", "hufu_grpc_requests_total", "hufu_grpc_request_duration_seconds",
		"hufu_cosign_operations_total", "hufu_cosign_operation_duration_seconds",
		"hufu_hsm_operations_total", "hufu_hsm_operation_duration_seconds",
		"hufu_store_commit_duration_seconds", "hufu_store_wal_syncs_total", "hufu_store_wal_sync_seconds_total",
		"hufu_share_cache_hits_total", "hufu_share_cache_misses_total",
		"hufu_pin_lockouts_total", "hufu_audit_sequence", "hufu_audit_last_checkpoint_age_seconds",
		"hufu_ready", "hufu_readiness_check", "hufu_kek_current_version", "hufu_kek_versions",
		"hufu_kek_rotation_running", "hufu_kek_rotation_rewrapped_blobs", "hufu_kek_rotation_remaining_records",
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if families[name] == nil {
			t.Errorf("no metric family %s", name)
		}
	}
	if v := families["hufu_pin_lockouts_total"].GetMetric()[0].GetCounter().GetValue(); v < 1 {
		t.Errorf("hufu_pin_lockouts_total = %v after a lockout", v)
	}
	if v := families["hufu_store_wal_syncs_total"].GetMetric()[0].GetCounter().GetValue(); v < 5 {
		t.Errorf("hufu_store_wal_syncs_total = %v after traffic", v)
	}
	if v := families["hufu_audit_sequence"].GetMetric()[0].GetGauge().GetValue(); v < 5 {
		t.Errorf("hufu_audit_sequence = %v after traffic", v)
	}
	var hsmOK bool
	for _, m := range families["hufu_hsm_operations_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "op" && l.GetValue() == "unwrap" {
				hsmOK = true
			}
		}
	}
	if !hsmOK {
		t.Error("no HSM unwrap counted")
	}
	// No personal data or key ids as label values.
	for _, secret := range []string{userID, phone, pk.id, "device-0001"} {
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
}

// TestReadinessFollowsTheHSM breaks the real SoftHSM2 token under the running daemon: its
// key objects disappear from the token's storage, as when an HSM loses its keys or its
// connection. /readyz and the gRPC health service must turn not ready. (SoftHSM2 never
// recovers the invalidated handles, so the way back is covered by the admin package's
// test with a fault-injecting probe; see the admin tests.)
func TestReadinessFollowsTheHSM(t *testing.T) {
	a := startAdminAppliance(t, nil)
	if code, body := a.call("GET", "/readyz?verbose", ""); code != http.StatusOK || !strings.Contains(string(body), "[+]hsm ok") || !strings.Contains(string(body), "[+]grpc ok") {
		t.Fatalf("readyz before: %d %s", code, body)
	}
	if err := a.d.Healthy(bg); err != nil {
		t.Fatalf("Healthy before: %v", err)
	}
	tokenDir := findTokenDir(t, a.cfg.HSM.TokenLabel)
	objs, _ := filepath.Glob(filepath.Join(tokenDir, "*.object"))
	for _, o := range objs {
		if filepath.Base(o) != "token.object" {
			if err := os.Rename(o, o+".gone"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.d.Healthy(bg); err == nil || !strings.HasPrefix(err.Error(), "hsm: ") {
		t.Fatalf("Healthy (the systemd watchdog's check) with the HSM gone: %v", err)
	}
	code, body := a.call("GET", "/readyz?verbose", admin.Operator)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "[-]hsm failed: hsm: health") || !strings.Contains(string(body), "[+]store ok") {
		t.Fatalf("readyz with the HSM gone: %d %s", code, body)
	}
	// Without a token, or with one that may read /metrics only, the answer names the check
	// but not the error.
	for _, role := range []admin.Role{"", admin.MetricsReader} {
		if code, body := a.call("GET", "/readyz?verbose", role); code != http.StatusServiceUnavailable || strings.Contains(string(body), "health") || !strings.Contains(string(body), "[-]hsm failed") {
			t.Fatalf("readyz as %q: %d %s", role, code, body)
		}
	}
	// The gRPC health service follows (the monitor probes every 20ms).
	conn := a.dial("device-health")
	hc := healthpb.NewHealthClient(conn.ClientConn())
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Check(bg, &healthpb.HealthCheckRequest{})
		if err == nil && resp.Status == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health stays %v (%v) with the HSM gone", resp.GetStatus(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findTokenDir is the SoftHSM2 storage directory of the token labelled label.
func findTokenDir(t *testing.T, label string) string {
	dirs, _ := filepath.Glob(filepath.Join(softhsmtest.Dir(), "tokens", "*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "token.object"))
		if err == nil && bytes.Contains(b, []byte(label)) {
			return d
		}
	}
	t.Fatalf("no SoftHSM2 directory for token %s", label)
	return ""
}

func TestAuditExportVerifiesAndTamperingIsNamed(t *testing.T) {
	a := startAdminAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	createKey(t, conn, userID, "key-audit-1", "123456")
	pub := a.auditKey()
	exp := a.export()
	res, err := store.VerifyExport(bytes.NewReader(exp), pub)
	if err != nil {
		t.Fatalf("a fresh export does not verify: %v", err)
	}
	if res.VerifiedThrough != res.To || res.Records < 5 {
		t.Fatalf("export verified through %d of %d records (%d)", res.VerifiedThrough, res.To, res.Records)
	}

	// Edit the outcome of record 4: verification names record 4.
	lines := bytes.Split(exp, []byte("\n"))
	edited := false
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"seq":4,`)) {
			lines[i] = bytes.Replace(l, []byte(`"outcome":"`), []byte(`"outcome":"x`), 1)
			edited = true
		}
	}
	if !edited {
		t.Fatal("record 4 not found in the export")
	}
	_, err = store.VerifyExport(bytes.NewReader(bytes.Join(lines, []byte("\n"))), pub)
	var ve *store.VerifyError
	if !errors.As(err, &ve) || ve.Seq != 4 {
		t.Fatalf("tampered export: %v; want a VerifyError naming record 4", err)
	}

	// A range export verifies as a chain segment.
	code, body := a.call("GET", "/audit/export?from=2&to=4", admin.Auditor)
	if code != http.StatusOK {
		t.Fatalf("range export: %d %s", code, body)
	}
	if _, err := store.VerifyExport(bytes.NewReader(body), nil); err != nil {
		t.Fatalf("range export: %v", err)
	}
	if code, _ := a.call("GET", "/audit/export?from=5&to=2", admin.Auditor); code != http.StatusBadRequest {
		t.Fatalf("reversed range: %d, want 400", code)
	}
	// Checkpoints are listed and signed by the same key.
	code, body = a.call("GET", "/audit/checkpoints", admin.Auditor)
	var cks struct{ Checkpoints []admin.CheckpointJSON }
	if err := json.Unmarshal(body, &cks); code != http.StatusOK || err != nil || len(cks.Checkpoints) == 0 {
		t.Fatalf("checkpoints: %d %s %v", code, body, err)
	}
}

func TestBackupRestoresIntoAFreshDataDirectory(t *testing.T) {
	a := startAdminAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-backup-1", "123456")
	pub := a.auditKey()

	code, archive := a.call("POST", "/backup", admin.SecurityOfficer)
	if code != http.StatusOK {
		t.Fatalf("backup: %d %s", code, archive)
	}
	a.stop()

	// The archive is encrypted: no phone number, no store file name in clear.
	if bytes.Contains(archive, []byte(phone)) || bytes.Contains(archive, []byte("MANIFEST")) {
		t.Fatal("the backup shows its content in clear")
	}
	// Restore (what hufud restore runs): decrypt through the same HSM token into an empty
	// data directory, start hufud there. An altered archive is refused first and leaves
	// nothing behind.
	fresh := t.TempDir()
	cfg := a.cfg
	cfg.DataDir = fresh
	altered := bytes.Clone(archive)
	altered[len(altered)/2] ^= 1
	if _, err := daemon.Restore(bg, cfg, bytes.NewReader(altered), "operator:olga"); !errors.Is(err, backup.ErrTampered) {
		t.Fatalf("restore of an altered backup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left a store: %v", err)
	}
	if st, err := daemon.Restore(bg, cfg, bytes.NewReader(archive), "operator:olga"); err != nil || st.Files == 0 {
		t.Fatalf("restore: %+v %v", st, err)
	}
	if scratch, _ := os.ReadDir(filepath.Join(a.cfg.DataDir, "backup-scratch")); len(scratch) != 0 {
		t.Fatalf("the scratch copy of the backup was left behind: %v", scratch)
	}
	// TLS material is configuration, not data: the development CA comes along.
	if err := os.CopyFS(filepath.Join(fresh, "tls"), os.DirFS(filepath.Join(a.cfg.DataDir, "tls"))); err != nil {
		t.Fatal(err)
	}
	a.cfg.DataDir = fresh
	// The stop after the backup was audited and checkpointed, so the HSM's audit anchor is
	// past the backup: the restore must be acknowledged before the daemon serves it.
	ack, err := daemon.AcknowledgeRestore(context.Background(), a.cfg, "operator:olga")
	if err != nil || !ack.Needed {
		t.Fatalf("acknowledging the restore: %+v, %v", ack, err)
	}
	a.start()

	conn2 := a.dial("device-0001")
	a.signIn(conn2, phone, "device-0001")
	keys := hufuv1.NewKeyServiceClient(conn2.ClientConn())
	got, err := keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: pk.id})
	if err != nil {
		t.Fatalf("restored key: %v", err)
	}
	if !bytes.Equal(got.Key.PublicKey, pk.public[:]) {
		t.Fatal("restored key has another public key")
	}
	ticket, err := keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "123456"})
	if err != nil {
		t.Fatalf("restored key's PIN: %v", err)
	}
	pk.keys, pk.cosign = keys, hufuv1.NewCosignServiceClient(conn2.ClientConn())
	pk.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}
	if _, err := pk.signer().Sign(rand.Reader, []byte("after restore"), signerOpts); err != nil {
		t.Fatalf("signing with the restored share: %v", err)
	}
	res, err := store.VerifyExport(bytes.NewReader(a.export()), pub)
	if err != nil {
		t.Fatalf("restored audit log: %v", err)
	}
	if res.VerifiedThrough != res.To {
		t.Fatalf("restored audit log verified through %d of %d", res.VerifiedThrough, res.To)
	}
}

func TestKEKRotationUnderConcurrentSigning(t *testing.T) {
	a := startAdminAppliance(t, nil)
	var pks []*phoneKey
	for u := range 3 {
		device := fmt.Sprintf("device-%04d", u)
		conn, userID := a.verifiedUser(fmt.Sprintf("1390000000%d", u), device)
		for k := range 4 {
			pks = append(pks, createKey(t, conn, userID, fmt.Sprintf("key-rot-%d-%d", u, k), "123456"))
		}
	}

	var signed, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, pk := range pks {
		wg.Go(func() {
			key := pk.signer()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := key.Sign(rand.Reader, []byte("bid under rotation"), signerOpts); err != nil {
					failed.Add(1)
					t.Errorf("%s: sign during rotation: %v", pk.id, err)
					return
				}
				signed.Add(1)
			}
		})
	}

	code, body := a.call("POST", "/kek/rotate", admin.SecurityOfficer)
	if code != http.StatusAccepted {
		close(stop)
		wg.Wait()
		t.Fatalf("rotate: %d %s", code, body)
	}
	var st admin.RotationStatus
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, body := a.call("GET", "/kek", admin.SecurityOfficer)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != admin.StateRunning || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := signed.Load()
	for signed.Load() < before+int64(len(pks)) && failed.Load() == 0 { // some signing after the rewrap too
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if st.State != admin.StateRewrapped {
		t.Fatalf("rotation state %q (%s), want rewrapped", st.State, st.Error)
	}
	if p := st.Progress["keys"]; p == nil || p.Done != len(pks) || p.Rewrapped < len(pks) {
		t.Fatalf("keys progress %+v, want all %d keys rewrapped", p, len(pks))
	}
	if p := st.Progress["accounts"]; p == nil || p.Rewrapped != 3 {
		t.Fatalf("accounts progress %+v, want 3 ID numbers rewrapped", p)
	}
	// The embedded CAs' root and issuing keys are wrapped too (two blobs per CA).
	if p := st.Progress["ca"]; p == nil || p.Total < 1 || p.Rewrapped != 2*p.Total {
		t.Fatalf("ca progress %+v, want both keys of every CA rewrapped", p)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d signatures failed during the rotation", failed.Load())
	}
	t.Logf("%d signatures while rotating; progress %+v %+v %+v", signed.Load(), *st.Progress["keys"], *st.Progress["accounts"], *st.Progress["ca"])

	code, body = a.call("POST", "/kek/finish", admin.SecurityOfficer)
	if code != http.StatusOK || !strings.Contains(string(body), "hufu-kek-v1") {
		t.Fatalf("finish: %d %s", code, body)
	}
	_, body = a.call("GET", "/kek", admin.SecurityOfficer)
	if err := json.Unmarshal(body, &st); err != nil || len(st.KEKs) != 1 || st.KEKs[0].Label != "hufu-kek-v2" || st.State != admin.StateFinished {
		t.Fatalf("after finish: %s", body)
	}

	// No operation lost: every signature that succeeded left its audit record.
	var audited int64
	for _, r := range records(t, a.export()) {
		if r["action"] == "key.sign" && r["outcome"] == "ok" {
			audited++
		}
	}
	if audited != signed.Load() {
		t.Fatalf("%d signatures succeeded but %d were audited", signed.Load(), audited)
	}

	// Every share opens under the new KEK: after a restart nothing is cached, and v1 is gone.
	a.restart()
	for _, pk := range pks {
		conn := a.dial(pk.deviceFromID())
		a.signIn(conn, pk.phone(), pk.deviceFromID())
		keys := hufuv1.NewKeyServiceClient(conn.ClientConn())
		ticket, err := keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "123456"})
		if err != nil {
			t.Fatalf("%s: ticket after rotation: %v", pk.id, err)
		}
		pk.keys, pk.cosign = keys, hufuv1.NewCosignServiceClient(conn.ClientConn())
		pk.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}
		if _, err := pk.signer().Sign(rand.Reader, []byte("after rotation"), signerOpts); err != nil {
			t.Fatalf("%s: sign after rotation and restart: %v", pk.id, err)
		}
	}
}

// deviceFromID and phone recover the account of a key made by the rotation test
// ("key-rot-<user>-<n>").
func (p *phoneKey) deviceFromID() string { return "device-000" + p.id[8:9] }
func (p *phoneKey) phone() string        { return "1390000000" + p.id[8:9] }

var signerOpts = &cosign.SignerOpts{ID: []byte("1234567812345678")}

func TestSystemClientRegistration(t *testing.T) {
	a := startAdminAppliance(t, nil)
	post := func(body string, role admin.Role) (int, []byte) {
		req, _ := http.NewRequest("POST", a.adminURL+"/system-clients", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.tokens[role])
		resp, err := a.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, role := range []admin.Role{admin.Auditor, admin.Operator, admin.MetricsReader} {
		if code, _ := post(`{"name":"bid-opening-1","services":["hufu.v1.ReviewService"]}`, role); code != http.StatusForbidden {
			t.Fatalf("%s registering: %d, want 403", role, code)
		}
	}
	for _, bad := range []struct{ body, field string }{
		{`{"name":"bad name","services":["hufu.v1.ReviewService"]}`, "name:"},
		{`{"name":"x1","services":["hufu.v1.NoSuchService"]}`, "services[0]:"},
		{`{"name":"x1","services":["hufu.v1.ScanService","hufu.v1.AccountService"]}`, "services[1]: hufu.v1.AccountService has no methods for system clients"},
		{`{"name":"x1","services":["hufu.v1.CosignService"]}`, "services[0]: hufu.v1.CosignService has no methods for system clients"},
		{`{"name":"x2","services":[]}`, "services:"},
		{`{"name":"x2","services":"hufu.v1.ScanService"}`, "services: want a []string"},
		{`{"name":"x3","extra":1}`, "body:"},
		{`{"name":"x4","services":["hufu.v1.ScanService"],"source":"config"}`, "body: only name and services"},
	} {
		if code, body := post(bad.body, admin.SecurityOfficer); code != http.StatusBadRequest || !strings.HasPrefix(string(body), bad.field) {
			t.Fatalf("%s: %d %s, want 400 naming %q", bad.body, code, body, bad.field)
		}
	}
	// Not a desk: registered at once by one officer.
	code, body := post(`{"name":"platform-1","services":["hufu.v1.ScanService"]}`, admin.SecurityOfficer)
	if code != http.StatusCreated {
		t.Fatalf("register a business system: %d %s", code, body)
	}
	// A desk: a request, which a second officer approves.
	code, body = post(`{"name":"bid-opening-1","services":["hufu.v1.ReviewService"]}`, admin.SecurityOfficer)
	var req struct{ Approval admin.Approval }
	if err := json.Unmarshal(body, &req); code != http.StatusAccepted || err != nil || req.Approval.State != admin.ApprovalPending || !slices.Equal(req.Approval.Desks, []string{"review"}) {
		t.Fatalf("register a desk: %d %s", code, body)
	}
	if code, body := a.call("POST", "/approvals/"+req.Approval.ID+"/approve", admin.SecurityOfficer); code != http.StatusForbidden || !strings.Contains(string(body), "second security officer") {
		t.Fatalf("approved by the officer who asked: %d %s", code, body)
	}
	code, body = a.call("POST", "/approvals/"+req.Approval.ID+"/approve", secondOfficer)
	if code != http.StatusCreated {
		t.Fatalf("approve: %d %s", code, body)
	}
	var reg admin.Decision
	if err := json.Unmarshal(body, &reg); err != nil || reg.Certificate == nil || !strings.Contains(reg.Certificate.KeyPEM, "PRIVATE KEY") || reg.Approval.State != admin.ApprovalApproved || reg.Approval.DecidedBy != "sue" {
		t.Fatalf("approval answer: %s", body)
	}
	if code, _ := a.call("POST", "/approvals/"+req.Approval.ID+"/approve", secondOfficer); code != http.StatusConflict {
		t.Fatalf("approving twice: %d, want 409", code)
	}
	if code, _ := post(`{"name":"bid-opening-1","services":["hufu.v1.ReviewService"]}`, admin.SecurityOfficer); code != http.StatusConflict {
		t.Fatalf("second registration: %d, want 409", code)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(certFile, []byte(reg.Certificate.CertificatePEM), 0o600)
	_ = os.WriteFile(keyFile, []byte(reg.Certificate.KeyPEM), 0o600)
	reviewAs := func() error {
		conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(a.cfg.DataDir, "tls", "ca.pem"), ServerName: "localhost",
			ClientCertFile: certFile, ClientKeyFile: keyFile})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = hufuv1.NewReviewServiceClient(conn.ClientConn()).ListReviews(bg, &hufuv1.ListReviewsRequest{})
		return err
	}
	if err := reviewAs(); !servedPastTheGate(err) {
		t.Fatalf("registered system refused: %v", err)
	}
	// The registration survives a restart (it is in the store) and shows in the list.
	a.restart()
	if err := reviewAs(); !servedPastTheGate(err) {
		t.Fatalf("registered system refused after a restart: %v", err)
	}
	if code, body := a.call("GET", "/system-clients", admin.Operator); code != http.StatusOK || !strings.Contains(string(body), `"bid-opening-1"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, _ := a.call("DELETE", "/system-clients/bid-opening-1", admin.Operator); code != http.StatusForbidden {
		t.Fatalf("operator removing: %d, want 403", code)
	}
	if code, body := a.call("DELETE", "/system-clients/bid-opening-1", admin.SecurityOfficer); code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", code, body)
	}
	if err := reviewAs(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("removed system: %v, want PermissionDenied", err)
	}
	if code, _ := a.call("DELETE", "/system-clients/bid-opening-1", admin.SecurityOfficer); code != http.StatusNotFound {
		t.Fatalf("removing twice: %d, want 404", code)
	}
	var requested, approved, registered, removed, selfApproval bool
	for _, r := range records(t, a.export()) {
		d, _ := r["details"].(map[string]any)
		requested = requested || (r["action"] == "admin.approval.request" && r["outcome"] == "ok" && d["token"] == "sam" && d["desks"] == "review")
		approved = approved || (r["action"] == "admin.approval.approve" && r["outcome"] == "ok" && d["token"] == "sue" && d["requested_by"] == "sam")
		selfApproval = selfApproval || (r["action"] == "admin.approval.approve" && r["outcome"] == "denied" && d["token"] == "sam")
		registered = registered || (r["action"] == "system_client.register" && r["outcome"] == "ok" && d["role"] == "security_officer" && d["token"] == "sue" && d["desks"] == "review")
		removed = removed || (r["action"] == "system_client.remove" && r["outcome"] == "ok" && d["role"] == "security_officer")
	}
	if !requested || !approved || !selfApproval || !registered || !removed {
		t.Fatalf("audit: requested %v, approved %v, self-approval refused %v, registered %v, removed %v", requested, approved, selfApproval, registered, removed)
	}
}

// servedPastTheGate reports whether a call got through authentication and authorisation:
// the handler answered, whatever it made of the (empty) request.
func servedPastTheGate(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.Unavailable, codes.Unknown:
		return false
	}
	return true
}

func TestAdminOverTLS(t *testing.T) {
	a := startAdminAppliance(t, func(c *config.Config) {
		f := devpki.FilesIn(filepath.Join(c.DataDir, "tls"))
		c.Admin.CertFile, c.Admin.KeyFile = f.ServerCert, f.ServerKey
	})
	if code, body := a.call("GET", "/metrics", admin.Operator); code != http.StatusOK || !strings.Contains(string(body), "hufu_build_info") {
		t.Fatalf("metrics over TLS: %d", code)
	}
	if code, _ := a.call("GET", "/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token over TLS: %d", code)
	}
	// Plain HTTP to the TLS listener gets no admin answer.
	resp, err := http.Get("http://" + a.d.AdminAddr().String() + "/livez")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the TLS admin listener answered plain HTTP")
		}
	}
	// SIGHUP's reload re-reads the admin certificate too.
	if err := a.d.ReloadTLS(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if code, _ := a.call("GET", "/livez", ""); code != http.StatusOK {
		t.Fatalf("livez after reload: %d", code)
	}
}

// TestKEKRotationCoversARefreshInFlight rotates while a share refresh is begun but not
// committed: the pending share and the wrapped refresh offer move to the new KEK too, and
// after the old KEK is destroyed and the daemon restarted the phone resumes and commits the
// refresh (which opens both) and signs with its new share.
func TestKEKRotationCoversARefreshInFlight(t *testing.T) {
	a := startAdminAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-rot-refresh", "123456")
	refreshTo(t, pk, true)

	if code, body := a.call("POST", "/kek/rotate", admin.SecurityOfficer); code != http.StatusAccepted {
		t.Fatalf("rotate: %d %s", code, body)
	}
	var st admin.RotationStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		_, body := a.call("GET", "/kek", admin.SecurityOfficer)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != admin.StateRunning || time.Now().After(deadline) {
			break
		}
	}
	if p := st.Progress["keys"]; st.State != admin.StateRewrapped || p == nil || p.Rewrapped != 3 {
		t.Fatalf("rotation %q, keys progress %+v: want the share, the pending share and the offer rewrapped", st.State, p)
	}
	if code, body := a.call("POST", "/kek/finish", admin.SecurityOfficer); code != http.StatusOK {
		t.Fatalf("finish: %d %s", code, body)
	}

	a.restart()
	conn = a.dial("device-0001")
	a.signIn(conn, phone, "device-0001")
	pk.keys, pk.cosign = hufuv1.NewKeyServiceClient(conn.ClientConn()), hufuv1.NewCosignServiceClient(conn.ClientConn())
	ticket, err := pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "123456"})
	if err != nil {
		t.Fatal(err)
	}
	pk.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}
	state, key := refreshTo(t, pk, false) // resumes: the same offer, then the commit
	if key.ShareVersion != 2 {
		t.Fatalf("refresh after rotation: %+v", key)
	}
	pk.share = state.Share
	if _, err := pk.signer().Sign(rand.Reader, []byte("after refresh and rotation"), signerOpts); err != nil {
		t.Fatalf("sign with the refreshed share: %v", err)
	}
}
