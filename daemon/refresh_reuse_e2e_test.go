package daemon_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// A refresh token works once: each refresh rotates the pair, and a spent refresh token
// presented again revokes every session descended from that sign-in (and only those), and
// is audited.
func TestRefreshTokenReuseRevokesItsFamily(t *testing.T) {
	auditTok, auditHash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := startAppliance(t, func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "audra", Role: string(admin.Auditor), SHA256: auditHash}}
	})
	const phone = "13800000071"
	conn := a.dial("alice-phone-1")
	first := a.signIn(conn, phone, "alice-phone-1")
	tablet := a.dial("alice-tablet-1")
	a.signIn(tablet, phone, "alice-tablet-1") // another sign-in of the account: its own family

	rotate := func(token string) *hufuv1.Session {
		t.Helper()
		r, err := conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: token})
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if r.Session.RefreshToken == token || r.Session.AccessToken == "" {
			t.Fatal("the refresh token was not rotated")
		}
		return r.Session
	}
	second := rotate(first.Session.RefreshToken)
	third := rotate(second.RefreshToken)
	conn.SetAccessToken(third.AccessToken)
	if _, err := conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{}); err != nil {
		t.Fatalf("the newest pair: %v", err)
	}

	// A stolen copy of the second refresh token, spent already, is presented again.
	_, err = conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: second.RefreshToken})
	wantCode(t, err, codes.Unauthenticated, "")
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "already used") {
		t.Fatalf("reuse answered %q", msg)
	}
	// Every token of the family is dead: the newest access and refresh token too.
	_, err = conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
	_, err = conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: third.RefreshToken})
	wantCode(t, err, codes.Unauthenticated, "")
	// Presenting the first token again is refused too, without another revocation.
	_, err = conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: first.Session.RefreshToken})
	wantCode(t, err, codes.Unauthenticated, "")
	// The account's other sign-in is untouched.
	if _, err := tablet.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{}); err != nil {
		t.Fatalf("the tablet's session after the phone's family was revoked: %v", err)
	}

	records := auditRecords(t, a.live.AdminURL(), auditTok)
	reuse := 0
	for _, r := range records {
		if r.Action == "account.session.reuse" {
			reuse++
			if r.Outcome != "denied" || r.Details["device"] != "alice-phone-1" {
				t.Fatalf("reuse audit record %+v", r)
			}
			if reuse == 1 && r.Details["revoked_session"] == "" {
				t.Fatalf("the first reuse record names no revoked session: %+v", r)
			}
			if reuse == 2 && r.Details["already_revoked"] != "true" {
				t.Fatalf("the second reuse record: %+v", r)
			}
		}
	}
	if reuse != 2 {
		t.Fatalf("%d account.session.reuse records; want 2", reuse)
	}
}

// A refresh token works only from the device it was issued to; presented from another, it
// is refused (and audited) without being spent.
func TestRefreshTokenIsBoundToItsDevice(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("bob-phone-01")
	in := a.signIn(conn, "13800000072", "bob-phone-01")

	for _, device := range []string{"mallory-phone", ""} {
		other := a.dial(device)
		_, err := other.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: in.Session.RefreshToken})
		wantCode(t, err, codes.Unauthenticated, "")
	}
	r, err := conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: in.Session.RefreshToken})
	if err != nil {
		t.Fatalf("the token from its own device, after refusals elsewhere: %v", err)
	}
	conn.SetAccessToken(r.Session.AccessToken)
	if _, err := conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{}); err != nil {
		t.Fatal(err)
	}
}

type auditLine struct {
	Type    string            `json:"type"`
	Action  string            `json:"action"`
	Outcome string            `json:"outcome"`
	Details map[string]string `json:"details"`
}

// auditRecords exports the audit log's records.
func auditRecords(t *testing.T, adminURL, token string) []auditLine {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, adminURL+"/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out []auditLine
	dec := json.NewDecoder(res.Body)
	for dec.More() {
		var l auditLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		if l.Type == "record" {
			out = append(out, l)
		}
	}
	return out
}
