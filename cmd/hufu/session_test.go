package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

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
