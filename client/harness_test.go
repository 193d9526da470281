package client_test

import (
	"context"
	"path/filepath"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// The appliance is daemontest's: in process on a loopback port with a real SoftHSM2 token,
// a real Pebble store and real TLS.

func TestMain(m *testing.M) { softhsmtest.Main(m) }

var bg = context.Background()

type appliance struct {
	*daemontest.Appliance
	t     testing.TB
	cfg   config.Config
	clock *daemontest.Clock
}

func startAppliance(t *testing.T, mutate func(*config.Config)) *appliance {
	t.Helper()
	var ms []func(*config.Config)
	if mutate != nil {
		ms = append(ms, mutate)
	}
	live := daemontest.Start(t, ms...)
	return &appliance{Appliance: live, t: t, cfg: live.Config, clock: live.Clock}
}

// restart stops the daemon and opens it again on the same data directory and token.
func (a *appliance) restart() { a.Restart() }

func (a *appliance) dial(device string) *client.Conn { return a.Dial(device) }

func (a *appliance) code(phone string, purpose accounts.Purpose) string {
	return a.SMSCode(phone, purpose)
}

// phone is a signed-in, identity-verified user on one device, with a keystore.
type phone struct {
	conn           *client.Conn
	ks             *keystore.Store
	number, device string
	token          string
}

// redial connects the phone again (after a restart the appliance listens on a new port).
func (a *appliance) redial(p *phone) {
	a.t.Helper()
	p.conn = a.dial(p.device)
	p.conn.SetAccessToken(p.token)
}

// newPhone registers number on device, verifies the identity and opens a keystore.
func (a *appliance) newPhone(number, device string) *phone {
	a.t.Helper()
	conn := a.dial(device)
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: number, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		a.t.Fatalf("send code: %v", err)
	}
	resp, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{
		Phone: number, Code: a.code(number, accounts.PurposeSignIn), Device: &hufuv1.Device{Id: device, Name: "test phone"},
	})
	if err != nil {
		a.t.Fatalf("sign in: %v", err)
	}
	conn.SetAccessToken(resp.Session.AccessToken)
	if _, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "张三", IdNumber: "11010519491231002X"}); err != nil {
		a.t.Fatalf("verify identity: %v", err)
	}
	dir := a.t.TempDir()
	ks, err := keystore.Open(filepath.Join(dir, "keys"), filepath.Join(dir, "device.key"))
	if err != nil {
		a.t.Fatal(err)
	}
	return &phone{conn: conn, ks: ks, number: number, device: device, token: resp.Session.AccessToken}
}
