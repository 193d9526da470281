package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// cliRunner runs the CLI in process against an appliance with its own HOME.
func cliRunner(t *testing.T, a *daemontest.Appliance, home string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		all := append([]string{"-addr", a.Addr, "-daemon-dir", a.Config.DataDir, "-home", home}, args...)
		err := run(all, strings.NewReader(""), &out, &out)
		return out.String(), err
	}
}

// TestLoginWithGivenCode signs in with a code the user already received (here asked for by
// another client, as the phone's app would): the CLI must not ask for another one, which
// would replace the given code or be refused by the send limit.
func TestLoginWithGivenCode(t *testing.T) {
	a := daemontest.StartOnWallClock(t)
	const phone = "13800138001"
	conn, err := client.Dial(client.Config{Addr: a.Addr, CAFile: filepath.Join(a.Config.DataDir, "tls", "ca.pem"), DeviceID: "test-sender"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Accounts.SendSmsCode(context.Background(), &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		t.Fatal(err)
	}
	code, err := accounts.LatestDevCode(filepath.Join(a.Config.DataDir, "dev-sms.jsonl"), phone, accounts.PurposeSignIn)
	if err != nil {
		t.Fatal(err)
	}
	hufu := cliRunner(t, a, t.TempDir())
	out, err := hufu("login", "-phone", phone, "-code", code)
	if err != nil || !strings.Contains(out, "signed in as") || strings.Contains(out, "development code") {
		t.Fatalf("login -code: %v\n%s", err, out)
	}
	if out, err := hufu("whoami"); err != nil || !strings.Contains(out, "account") {
		t.Fatalf("whoami after login -code: %v\n%s", err, out)
	}
}

// TestExpiredSessionIsRefreshed: past the access token's lifetime (2h) but within the refresh
// token's (30 days) a command refreshes the session once, keeps the new pair and succeeds;
// the next run uses the kept pair. Past the refresh token's lifetime it says to sign in again.
func TestExpiredSessionIsRefreshed(t *testing.T) {
	a := daemontest.Start(t)
	home := t.TempDir()
	hufu := cliRunner(t, a, home)
	if out, err := hufu("login", "-phone", "13800138002"); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	c := &cli{home: home}
	if err := c.load(); err != nil {
		t.Fatal(err)
	}
	before := c.state

	a.Clock.Advance(2*time.Hour + time.Minute)
	if out, err := hufu("whoami"); err != nil || !strings.Contains(out, "138****8002") {
		t.Fatalf("whoami with an expired access token: %v\n%s", err, out)
	}
	c = &cli{home: home}
	if err := c.load(); err != nil {
		t.Fatal(err)
	}
	if c.state.AccessToken == before.AccessToken || c.state.RefreshToken == before.RefreshToken || c.state.RefreshToken == "" {
		t.Fatalf("the refreshed pair was not kept: %+v", c.state)
	}
	if out, err := hufu("platform", "list"); err != nil || !strings.Contains(out, "demo") {
		t.Fatalf("platform list with the kept pair: %v\n%s", err, out)
	}
	c = &cli{home: home}
	if err := c.load(); err != nil {
		t.Fatal(err)
	}
	if c.state.AccessToken == before.AccessToken {
		t.Fatal("the old access token is back")
	}

	a.Clock.Advance(31 * 24 * time.Hour)
	if out, err := hufu("whoami"); err == nil || !strings.Contains(describe(err), "sign in again") || !strings.Contains(describe(err), "unauthenticated") {
		t.Fatalf("whoami with both tokens expired: %v\n%s", err, out)
	}
}

// TestStaleCopyOfRotatedSession: the CLI keeps the rotated pair; a copy of the state taken
// before the rotation (a stolen or restored file) holds a spent refresh token, and using it
// revokes the whole sign-in, the kept pair included: both must sign in again.
func TestStaleCopyOfRotatedSession(t *testing.T) {
	a := daemontest.Start(t)
	home, stale := t.TempDir(), t.TempDir()
	hufu := cliRunner(t, a, home)
	if out, err := hufu("login", "-phone", "13800138003"); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	copied := &cli{home: home}
	if err := copied.load(); err != nil {
		t.Fatal(err)
	}
	copied.home = stale
	if err := copied.save(); err != nil {
		t.Fatal(err)
	}

	a.Clock.Advance(2*time.Hour + time.Minute)
	if out, err := hufu("whoami"); err != nil {
		t.Fatalf("whoami refreshing the session: %v\n%s", err, out)
	}
	// The client answers with the rejection of the access token (the refresh's refusal
	// only ends the attempt).
	out, err := cliRunner(t, a, stale)("whoami")
	if err == nil || !strings.Contains(describe(err), "sign in again") {
		t.Fatalf("whoami from the stale copy: %v\n%s", err, out)
	}
	if out, err := hufu("whoami"); err == nil || !strings.Contains(describe(err), "sign in again") {
		t.Fatalf("whoami with the kept pair after the stale copy's refresh: %v\n%s", err, out)
	}
}
