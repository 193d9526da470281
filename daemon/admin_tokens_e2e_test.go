package daemon_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/admin/adminclient"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/store"
)

// adminClient is the Go admin client for the token of role (a key of a.tokens), or for a
// token given as is.
func (a *adminAppliance) adminClient(role admin.Role, token ...string) *adminclient.Client {
	a.t.Helper()
	tok := a.tokens[role]
	if len(token) > 0 {
		tok = token[0]
	}
	c, err := adminclient.New(adminclient.Config{URL: a.adminURL, Token: tok, HTTPClient: a.http})
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

// wantStatus fails unless err is an *adminclient.Error with status code whose message
// contains msg.
func wantStatus(t *testing.T, what string, err error, code int, msg string) {
	t.Helper()
	var e *adminclient.Error
	if !errors.As(err, &e) || e.Status != code || !strings.Contains(e.Message, msg) || e.RequestID == "" {
		t.Fatalf("%s: %v, want %d with %q", what, err, code, msg)
	}
}

func TestAdminTokenLifecycle(t *testing.T) {
	a := startAdminAppliance(t, nil)
	sam := a.adminClient(admin.SecurityOfficer)

	// Bad input: 400 naming the field, nothing stored.
	for _, c := range []struct {
		name, role string
		ttl        time.Duration
		want       string
	}{
		{"bad name", "operator", time.Hour, "name:"},
		{"", "operator", time.Hour, "name:"},
		{"x", "root", time.Hour, "role:"},
		{"x", "operator", time.Second, "expires_in:"},
		{"x", "operator", 400 * 24 * time.Hour, "expires_in:"},
	} {
		_, err := sam.CreateToken(bg, c.name, c.role, c.ttl)
		wantStatus(t, "create "+c.name+"/"+c.role, err, http.StatusBadRequest, c.want)
	}
	code, body := a.callBody("POST", "/tokens", admin.SecurityOfficer, `{"name":"x","role":"operator"}`)
	if code != http.StatusBadRequest || !strings.HasPrefix(string(body), "expires_in:") {
		t.Fatalf("no expires_in: %d %s", code, body)
	}
	code, body = a.callBody("POST", "/tokens", admin.SecurityOfficer, `{"name":"x","role":"operator","expires_in":"1h","sha256":"00"}`)
	if code != http.StatusBadRequest || !strings.HasPrefix(string(body), "body:") {
		t.Fatalf("unknown field: %d %s", code, body)
	}
	// A configured name is not available; nor may other roles create tokens.
	_, err := sam.CreateToken(bg, "olga", "operator", time.Hour)
	wantStatus(t, "configured name", err, http.StatusConflict, "admin.tokens")
	for _, role := range []admin.Role{admin.Operator, admin.Auditor, admin.MetricsReader} {
		_, err := a.adminClient(role).CreateToken(bg, "x", "operator", time.Hour)
		wantStatus(t, string(role)+" creating", err, http.StatusForbidden, "may not use /tokens")
		wantStatus(t, string(role)+" revoking", a.adminClient(role).RevokeToken(bg, "x"), http.StatusForbidden, "may not use")
		_, err = a.adminClient(role).Tokens(bg)
		wantStatus(t, string(role)+" listing", err, http.StatusForbidden, "may not use")
	}

	// Create a metrics reader online: it scrapes and does nothing else.
	created, err := sam.CreateToken(bg, "prometheus-2", "metrics_reader", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Token, "hufu_admin_") || created.Info.State != admin.TokenActive || created.Info.CreatedBy != "sam" {
		t.Fatalf("created: %+v", created.Info)
	}
	prom := a.adminClient("", created.Token)
	if m, err := prom.Metrics(bg); err != nil || !bytes.Contains(m, []byte("hufu_ready 1")) {
		t.Fatalf("online metrics reader: %v", err)
	}
	_, err = prom.AuditPublicKey(bg)
	wantStatus(t, "metrics reader on the public key", err, http.StatusForbidden, "metrics_reader")
	_, err = sam.CreateToken(bg, "prometheus-2", "operator", time.Hour)
	wantStatus(t, "name taken", err, http.StatusConflict, "taken")

	// An operator token, listed without secrets; then revoked, refused at once.
	op, err := sam.CreateToken(bg, "olga-2", "operator", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	olga2 := a.adminClient("", op.Token)
	if _, err := olga2.SystemClients(bg); err != nil {
		t.Fatalf("online operator token: %v", err)
	}
	list, err := sam.Tokens(bg)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, ti := range list {
		states[ti.Name+"/"+ti.Source] = ti.State
	}
	if states["sam/config"] != "active" || states["olga-2/online"] != "active" || states["prometheus-2/online"] != "active" {
		t.Fatalf("list: %v", states)
	}
	_, listBody := a.call("GET", "/tokens", admin.SecurityOfficer)
	if bytes.Contains(listBody, []byte(op.Token)) || bytes.Contains(listBody, []byte(admin.HashToken(op.Token))) || bytes.Contains(listBody, []byte("sha256")) {
		t.Fatal("the token list shows a token or its hash")
	}
	if err := sam.RevokeToken(bg, "olga-2"); err != nil {
		t.Fatal(err)
	}
	_, err = olga2.SystemClients(bg)
	wantStatus(t, "revoked token", err, http.StatusUnauthorized, "token")
	wantStatus(t, "revoking twice", sam.RevokeToken(bg, "olga-2"), http.StatusConflict, "revoked")
	wantStatus(t, "revoking a configured token", sam.RevokeToken(bg, "olga"), http.StatusConflict, "admin.tokens")
	wantStatus(t, "revoking nobody", sam.RevokeToken(bg, "nobody"), http.StatusNotFound, "nobody")

	// Expiry by the appliance's clock; the token stays refused after a restart, the
	// live one keeps working.
	a.clock.Advance(47 * time.Hour)
	if _, err := prom.Metrics(bg); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	short, err := sam.CreateToken(bg, "short", "auditor", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a.clock.Advance(time.Hour)
	_, err = prom.Metrics(bg)
	wantStatus(t, "expired token", err, http.StatusUnauthorized, "token")
	a.restart() // a new admin port: new clients
	prom, olga2, sam = a.adminClient("", created.Token), a.adminClient("", op.Token), a.adminClient(admin.SecurityOfficer)
	_, err = prom.Metrics(bg)
	wantStatus(t, "expired token after a restart", err, http.StatusUnauthorized, "token")
	_, err = olga2.SystemClients(bg)
	wantStatus(t, "revoked token after a restart", err, http.StatusUnauthorized, "token")
	if _, _, err := a.adminClient("", short.Token).Checkpoints(bg, 0, 10); err != nil {
		t.Fatalf("live online token after a restart: %v", err)
	}
	list, _ = sam.Tokens(bg)
	states = map[string]string{}
	for _, ti := range list {
		states[ti.Name] = ti.State
	}
	if states["prometheus-2"] != admin.TokenExpired || states["olga-2"] != admin.TokenRevoked || states["short"] != admin.TokenActive {
		t.Fatalf("states after expiry: %v", states)
	}

	// Every change is audited with who made it; no token or hash in the log.
	exp := a.export()
	for _, secret := range []string{created.Token, op.Token, short.Token, admin.HashToken(op.Token)} {
		if bytes.Contains(exp, []byte(secret)) {
			t.Fatal("a token or its hash appears in the audit log")
		}
	}
	want := map[string]bool{"create prometheus-2": false, "create olga-2": false, "revoke olga-2": false, "denied create olga": false, "denied operator": false}
	for _, r := range records(t, exp) {
		d, _ := r["details"].(map[string]any)
		switch {
		case r["action"] == "admin.token.create" && r["outcome"] == "ok" && d["token"] == "sam" && d["name"] == "prometheus-2" && d["new_role"] == "metrics_reader":
			want["create prometheus-2"] = true
		case r["action"] == "admin.token.create" && r["outcome"] == "ok" && d["name"] == "olga-2":
			want["create olga-2"] = true
		case r["action"] == "admin.token.revoke" && r["outcome"] == "ok" && d["token"] == "sam" && d["name"] == "olga-2":
			want["revoke olga-2"] = true
		case r["action"] == "admin.token.create" && r["outcome"] == "denied" && d["name"] == "olga":
			want["denied create olga"] = true
		case r["action"] == "admin.tokens.create" && r["outcome"] == "denied" && d["role"] == "operator":
			want["denied operator"] = true
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("audit log lacks %s", k)
		}
	}
}

// callBody is call with a request body.
func (a *adminAppliance) callBody(method, path string, role admin.Role, body string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.adminURL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.tokens[role])
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// TestAdminSecondOfficer covers the approvals: a security officer token made online waits for a
// second officer and cannot approve its maker's requests; requests expire; a rejected
// request changes nothing.
func TestAdminSecondOfficer(t *testing.T) {
	a := startAdminAppliance(t, nil)
	sam, sue := a.adminClient(admin.SecurityOfficer), a.adminClient(secondOfficer)

	// sam makes a security officer token for himself: inactive until sue approves.
	made, err := sam.CreateToken(bg, "sam-laptop", "security_officer", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if made.Info.State != admin.TokenAwaitingApproval || made.Approval == nil || made.Approval.Kind != admin.ApprovalToken {
		t.Fatalf("security officer token: %+v %+v", made.Info, made.Approval)
	}
	samLaptop := a.adminClient("", made.Token)
	_, err = samLaptop.KEKStatus(bg)
	wantStatus(t, "token awaiting approval", err, http.StatusUnauthorized, "token")
	_, err = sam.Approve(bg, made.Approval.ID)
	wantStatus(t, "self-approval of a token", err, http.StatusForbidden, "second security officer")
	if d, err := sue.Approve(bg, made.Approval.ID); err != nil || d.Token == nil || d.Token.State != admin.TokenActive {
		t.Fatalf("sue approves the token: %+v %v", d, err)
	}
	if _, err := samLaptop.KEKStatus(bg); err != nil {
		t.Fatalf("approved token: %v", err)
	}

	// sam asks for a desk; his second token is still sam's: refused as the second officer.
	reg, err := sam.RegisterSystemClient(bg, "recon-1", []string{"hufu.v1.ReconciliationService", "hufu.v1.ScanService"})
	if err != nil || reg.Approval == nil || reg.Client != nil {
		t.Fatalf("desk request: %+v %v", reg, err)
	}
	_, err = samLaptop.Approve(bg, reg.Approval.ID)
	wantStatus(t, "approval with a token the asker made", err, http.StatusForbidden, "both go back to sam")

	// The other direction: a request made with sam's second token is still sam's, and so is
	// one made with a token that token created.
	byLaptop, err := samLaptop.RegisterSystemClient(bg, "review-9", []string{"hufu.v1.ReviewService"})
	if err != nil || byLaptop.Approval == nil {
		t.Fatalf("desk request by sam-laptop: %+v %v", byLaptop, err)
	}
	_, err = sam.Approve(bg, byLaptop.Approval.ID)
	wantStatus(t, "approval by the maker of the token that asked", err, http.StatusForbidden, "both go back to sam")
	third, err := samLaptop.CreateToken(bg, "sam-3", "security_officer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sam.Approve(bg, third.Approval.ID)
	wantStatus(t, "an officer token approved by its maker's maker", err, http.StatusForbidden, "both go back to sam")
	if _, err := sue.Reject(bg, third.Approval.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := sue.Approve(bg, byLaptop.Approval.ID); err != nil {
		t.Fatalf("sue approves sam-laptop's request: %v", err)
	}
	pending, err := sue.Approvals(bg, admin.ApprovalPending)
	if err != nil || len(pending) != 1 || pending[0].ID != reg.Approval.ID || pending[0].SystemClient.Name != "recon-1" || !equal(pending[0].Desks, "reconciliation") {
		t.Fatalf("pending: %+v %v", pending, err)
	}

	// Requests expire: after the approval TTL (24h) nobody can decide it; nothing was
	// registered.
	a.clock.Advance(24*time.Hour + time.Second)
	_, err = sue.Approve(bg, reg.Approval.ID)
	wantStatus(t, "expired request", err, http.StatusConflict, "expired")
	if ex, _ := sue.Approvals(bg, admin.ApprovalExpired); len(ex) != 1 {
		t.Fatalf("expired requests: %+v", ex)
	}
	clients, _ := sue.SystemClients(bg)
	for _, c := range clients {
		if c.Name == "recon-1" {
			t.Fatal("an expired request registered its client")
		}
	}

	// Rejected: nothing registered; a decided request cannot be approved.
	reg, err = sam.RegisterSystemClient(bg, "recon-1", []string{"hufu.v1.ReconciliationService"})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := sue.Reject(bg, reg.Approval.ID); err != nil || d.Approval.State != admin.ApprovalRejected {
		t.Fatalf("reject: %+v %v", d, err)
	}
	_, err = sue.Approve(bg, reg.Approval.ID)
	wantStatus(t, "approving a rejected request", err, http.StatusConflict, "rejected")
	_, err = sue.Approve(bg, "ffffffffffffffff")
	wantStatus(t, "unknown request", err, http.StatusNotFound, "no approval request")
	_, err = sue.Approve(bg, "nope")
	wantStatus(t, "malformed id", err, http.StatusBadRequest, "id:")

	// A rejected security officer token is dead.
	made, err = sue.CreateToken(bg, "sue-2", "security_officer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sam.Reject(bg, made.Approval.ID); err != nil {
		t.Fatal(err)
	}
	_, err = a.adminClient("", made.Token).KEKStatus(bg)
	wantStatus(t, "rejected token", err, http.StatusUnauthorized, "token")

	var tokenApproved, expiredRefused, rejected bool
	for _, r := range records(t, a.export()) {
		d, _ := r["details"].(map[string]any)
		tokenApproved = tokenApproved || (r["action"] == "admin.approval.approve" && r["outcome"] == "ok" && d["kind"] == admin.ApprovalToken && d["name"] == "sam-laptop" && d["token"] == "sue")
		expiredRefused = expiredRefused || (r["action"] == "admin.approval.approve" && r["outcome"] == "denied" && strings.Contains(d["error"].(string), "expired"))
		rejected = rejected || (r["action"] == "admin.approval.reject" && r["outcome"] == "ok" && d["client"] == "recon-1")
	}
	if !tokenApproved || !expiredRefused || !rejected {
		t.Fatalf("audit: token approved %v, expired refused %v, rejected %v", tokenApproved, expiredRefused, rejected)
	}
}

func equal(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestAdminClientAgainstTheServer runs the read and operations endpoints through the Go
// admin client on a real appliance over TLS.
func TestAdminClientAgainstTheServer(t *testing.T) {
	a := startAdminAppliance(t, func(c *config.Config) {
		f := devpki.FilesIn(filepath.Join(c.DataDir, "tls"))
		c.Admin.CertFile, c.Admin.KeyFile = f.ServerCert, f.ServerKey
	})
	if !strings.HasPrefix(a.adminURL, "https://") {
		t.Fatal("not over TLS")
	}
	sam := a.adminClient(admin.SecurityOfficer)
	anon := a.adminClient("", "")
	if err := anon.Live(bg); err != nil {
		t.Fatal(err)
	}
	rd, err := anon.Ready(bg)
	if err != nil || !rd.Ready || !equal(rd.Lines[len(rd.Lines)-1:], "ok") {
		t.Fatalf("ready: %+v %v", rd, err)
	}
	_, err = anon.Metrics(bg)
	wantStatus(t, "metrics without a token", err, http.StatusUnauthorized, "bearer token")

	pem, err := a.adminClient(admin.Auditor).AuditPublicKey(bg)
	if err != nil || !bytes.Contains(pem, []byte("PUBLIC KEY")) {
		t.Fatalf("public key: %v", err)
	}
	var exp bytes.Buffer
	if err := a.adminClient(admin.Auditor).AuditExport(bg, &exp, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyExport(bytes.NewReader(exp.Bytes()), nil); err != nil {
		t.Fatalf("export through the client: %v", err)
	}
	wantStatus(t, "reversed range", a.adminClient(admin.Auditor).AuditExport(bg, &exp, 5, 2), http.StatusBadRequest, "before from")
	cks, _, err := a.adminClient(admin.Auditor).Checkpoints(bg, 0, 0)
	if err != nil || len(cks) == 0 {
		t.Fatalf("checkpoints: %v %v", cks, err)
	}

	var archive bytes.Buffer
	name, err := sam.Backup(bg, &archive)
	if err != nil || !strings.HasPrefix(name, "hufu-backup-") || archive.Len() == 0 {
		t.Fatalf("backup: %q %d %v", name, archive.Len(), err)
	}
	_, err = a.adminClient(admin.Operator).Backup(bg, &archive)
	wantStatus(t, "operator backup", err, http.StatusForbidden, "operator")

	st, err := sam.KEKStatus(bg)
	if err != nil || st.Current != "hufu-kek-v1" || st.State != admin.StateIdle {
		t.Fatalf("kek: %+v %v", st, err)
	}
	st, err = sam.RotateKEK(bg)
	if err != nil || st.To != "hufu-kek-v2" {
		t.Fatalf("rotate: %+v %v", st, err)
	}
	for deadline := time.Now().Add(time.Minute); st.State == admin.StateRunning && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st, err = sam.KEKStatus(bg); err != nil {
			t.Fatal(err)
		}
	}
	m, err := a.adminClient(admin.MetricsReader).Metrics(bg)
	if err != nil || !bytes.Contains(m, []byte("hufu_kek_current_version 2")) || !bytes.Contains(m, []byte("hufu_kek_versions 2")) ||
		!bytes.Contains(m, []byte(`hufu_kek_rotation_remaining_records{domain="keys"} 0`)) || !bytes.Contains(m, []byte(`hufu_readiness_check{check="hsm"} 1`)) {
		t.Fatalf("metrics after the rewrap: %v\n%s", err, grepLines(m, "hufu_kek", "hufu_read"))
	}
	fin, err := sam.FinishKEK(bg)
	if err != nil || !equal(fin.Destroyed, "hufu-kek-v1") {
		t.Fatalf("finish: %+v %v", fin, err)
	}

	ids := a.d.CAIDs()
	if len(ids) == 0 {
		t.Fatal("no CA")
	}
	der, err := anon.CRL(bg, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		t.Fatalf("CRL: %v", err)
	}
	_, err = anon.CRL(bg, "no-such-ca")
	wantStatus(t, "unknown CA", err, http.StatusNotFound, "no such CA")
}

func grepLines(b []byte, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
