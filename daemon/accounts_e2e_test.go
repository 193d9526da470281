package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var (
	bg    = context.Background()
	phone = "13800138000"
)

// signIn registers or signs in phone by SMS code on conn's device and attaches the token.
func (a *appliance) signIn(conn *client.Conn, phone, device string) *hufuv1.SignInWithSmsCodeResponse {
	a.t.Helper()
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		a.t.Fatalf("send code: %v", err)
	}
	resp, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{
		Phone: phone, Code: a.code(phone, accounts.PurposeSignIn), Device: &hufuv1.Device{Id: device, Name: "test phone"},
	})
	if err != nil {
		a.t.Fatalf("sign in: %v", err)
	}
	conn.SetAccessToken(resp.Session.AccessToken)
	return resp
}

func TestAccountLifecycle(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")

	hc, err := conn.Health.Check(bg, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}

	first := a.signIn(conn, phone, "device-0001")
	if !first.Registered || first.Account.PhoneMasked != "138****8000" || first.Account.HasPassword {
		t.Fatalf("registration: %+v", first.Account)
	}
	again := a.signIn(conn, phone, "device-0001")
	if again.Registered || again.Account.Id != first.Account.Id {
		t.Fatal("a second sign-in must find the same account")
	}

	if _, err := conn.Accounts.SetPassword(bg, &hufuv1.SetPasswordRequest{NewPassword: "short"}); err == nil {
		t.Fatal("weak password accepted")
	} else {
		wantCode(t, err, codes.InvalidArgument, "new_password")
	}
	if _, err := conn.Accounts.SetPassword(bg, &hufuv1.SetPasswordRequest{NewPassword: "tiger-tally-1"}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Accounts.SetPassword(bg, &hufuv1.SetPasswordRequest{CurrentPassword: "wrong-one-1", NewPassword: "tiger-tally-2"})
	wantCode(t, err, codes.PermissionDenied, "")

	other := a.dial("device-0002")
	byPassword, err := other.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{
		Phone: phone, Password: "tiger-tally-1", Device: &hufuv1.Device{Id: "device-0002"},
	})
	if err != nil || byPassword.Account.Id != first.Account.Id || !byPassword.Account.HasPassword {
		t.Fatalf("password sign-in: %v", err)
	}
	_, err = other.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{Phone: phone, Password: "nope-nope-1", Device: &hufuv1.Device{Id: "device-0002"}})
	wantCode(t, err, codes.Unauthenticated, "")

	// Platforms.
	list, err := conn.Platforms.ListPlatforms(bg, &hufuv1.ListPlatformsRequest{})
	if err != nil || len(list.Platforms) != 2 {
		t.Fatalf("platforms: %v %v", list, err)
	}
	cur, err := conn.Platforms.GetCurrentPlatform(bg, &hufuv1.GetCurrentPlatformRequest{})
	if err != nil || cur.Platform != nil {
		t.Fatalf("no platform chosen yet: %v %v", cur, err)
	}
	if _, err := conn.Platforms.SelectPlatform(bg, &hufuv1.SelectPlatformRequest{PlatformId: "hangzhou"}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Platforms.SelectPlatform(bg, &hufuv1.SelectPlatformRequest{PlatformId: "atlantis"})
	wantCode(t, err, codes.InvalidArgument, "platform_id")
	if cur, _ := conn.Platforms.GetCurrentPlatform(bg, &hufuv1.GetCurrentPlatformRequest{}); cur.GetPlatform().GetId() != "hangzhou" {
		t.Fatalf("current platform %v", cur)
	}

	// Change phone: a code to the new number.
	newPhone := "13900139000"
	for _, p := range []string{phone, newPhone} {
		if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: p, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE}); err != nil {
			t.Fatal(err)
		}
	}
	// A session and the new number are not enough: the current number must agree too.
	_, err = conn.Accounts.ChangePhone(bg, &hufuv1.ChangePhoneRequest{NewPhone: newPhone, Code: a.code(newPhone, accounts.PurposeChangePhone)})
	wantCode(t, err, codes.InvalidArgument, "current_code")
	changed, err := conn.Accounts.ChangePhone(bg, &hufuv1.ChangePhoneRequest{NewPhone: newPhone, Code: a.code(newPhone, accounts.PurposeChangePhone),
		CurrentCode: a.code(phone, accounts.PurposeChangePhone)})
	if err != nil || changed.Account.PhoneMasked != "139****9000" {
		t.Fatalf("change phone: %v", err)
	}
	// The other device's session was signed out; this one was kept.
	_, err = other.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
	if _, err := conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{}); err != nil {
		t.Fatalf("the session that changed the number: %v", err)
	}
	if _, err := other.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{Phone: phone, Password: "tiger-tally-1", Device: &hufuv1.Device{Id: "device-0002"}}); err == nil {
		t.Fatal("the old number still signs in")
	}

	// Restart keeps everything.
	a.restart()
	conn, other = a.dial("device-0001"), a.dial("device-0002")
	conn.SetAccessToken(again.Session.AccessToken)
	acct, err := conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	if err != nil || acct.Account.CurrentPlatformId != "hangzhou" || acct.Account.PhoneMasked != "139****9000" {
		t.Fatalf("after restart: %v %v", acct, err)
	}
	if _, err := other.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{Phone: newPhone, Password: "tiger-tally-1", Device: &hufuv1.Device{Id: "device-0002"}}); err != nil {
		t.Fatalf("password after restart: %v", err)
	}

	// Refresh rotates the pair; sign-out kills the session.
	refreshed, err := conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: again.Session.RefreshToken})
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
	conn.SetAccessToken(refreshed.Session.AccessToken)
	if _, err := conn.Accounts.SignOut(bg, &hufuv1.SignOutRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
	_, err = conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: refreshed.Session.RefreshToken})
	wantCode(t, err, codes.Unauthenticated, "")
}

func TestTokensAreBoundToTheirDevice(t *testing.T) {
	a := startAppliance(t, nil)
	alice := a.dial("alice-phone")
	a.signIn(alice, "13800000001", "alice-phone")
	bob := a.dial("bob-phone-1")
	a.signIn(bob, "13800000002", "bob-phone-1")

	anonymous := a.dial("anon-device")
	_, err := anonymous.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")

	// Bob's phone presenting Alice's token is refused: the token belongs to Alice's device.
	stolen := a.dial("bob-phone-1")
	aliceToken := a.signIn(alice, "13800000001", "alice-phone").Session.AccessToken
	stolen.SetAccessToken(aliceToken)
	_, err = stolen.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")

	forged := a.dial("alice-phone")
	forged.SetAccessToken("hat_" + strings.Repeat("A", 43))
	_, err = forged.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")

	// Access tokens expire with the clock.
	a.clock.Advance(a.cfg.Account.AccessTokenTTL.Std() + time.Second)
	_, err = alice.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
}

func TestCodesExpireAreSingleUseAndLockOut(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	dev := &hufuv1.Device{Id: "device-0001"}
	send := func(p string) error {
		_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: p, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
		return err
	}
	signIn := func(p, code string) error {
		_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: p, Code: code, Device: dev})
		return err
	}

	if err := send(phone); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send(phone), codes.ResourceExhausted, "") // resend interval
	code := a.code(phone, accounts.PurposeSignIn)
	a.clock.Advance(a.cfg.Account.SMSCodeTTL.Std() + time.Second)
	wantCode(t, signIn(phone, code), codes.Unauthenticated, "") // expired

	if err := send(phone); err != nil {
		t.Fatal(err)
	}
	code = a.code(phone, accounts.PurposeSignIn)
	if err := signIn(phone, code); err != nil {
		t.Fatal(err)
	}
	wantCode(t, signIn(phone, code), codes.Unauthenticated, "") // single use

	// A code for one purpose does not work for another.
	a.clock.Advance(time.Minute)
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, signIn(phone, a.code(phone, accounts.PurposeResetPassword)), codes.Unauthenticated, "")

	// Wrong codes: the fifth locks the number, and a right code does not help until it ends.
	a.clock.Advance(time.Minute)
	if err := send(phone); err != nil {
		t.Fatal(err)
	}
	code = a.code(phone, accounts.PurposeSignIn)
	wrong := "000000"
	if wrong == code {
		wrong = "000001"
	}
	for i := 1; i < a.cfg.Account.CodeMaxAttempts; i++ {
		wantCode(t, signIn(phone, wrong), codes.Unauthenticated, "")
	}
	wantCode(t, signIn(phone, wrong), codes.ResourceExhausted, "")
	wantCode(t, signIn(phone, code), codes.ResourceExhausted, "")
	wantCode(t, send(phone), codes.ResourceExhausted, "")
	a.clock.Advance(a.cfg.Account.CodeLockout.Std() + time.Second)
	if err := send(phone); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if err := signIn(phone, a.code(phone, accounts.PurposeSignIn)); err != nil {
		t.Fatal(err)
	}
}

func TestSMSRateLimits(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) {
		c.Account.SMSMaxPerPhoneHour = 2
		c.Account.SMSMaxPerSourceHour = 3
	})
	conn := a.dial("device-0001")
	send := func(p string) error {
		_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: p, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
		return err
	}
	for range 2 {
		if err := send(phone); err != nil {
			t.Fatal(err)
		}
		a.clock.Advance(2 * time.Minute)
	}
	wantCode(t, send(phone), codes.ResourceExhausted, "") // per number
	if err := send("13700137000"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send("13600136000"), codes.ResourceExhausted, "") // per source address
	a.clock.Advance(time.Hour)
	if err := send(phone); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestMalformedRequestsNameTheField(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	dev := &hufuv1.Device{Id: "device-0001"}
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"bad phone", func() error {
			_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: "12345", Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
			return err
		}, "phone"},
		{"no purpose", func() error {
			_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone})
			return err
		}, "purpose"},
		{"code not 6 digits", func() error {
			_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: "12ab56", Device: dev})
			return err
		}, "code"},
		{"missing device", func() error {
			_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: "123456"})
			return err
		}, "device.id"},
		{"oversized device name", func() error {
			_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: "123456",
				Device: &hufuv1.Device{Id: "device-0001", Name: strings.Repeat("名", 65)}})
			return err
		}, "device.name"},
		{"oversized WeChat code", func() error {
			_, err := conn.Accounts.SignInWithWechat(bg, &hufuv1.SignInWithWechatRequest{AuthCode: strings.Repeat("x", 513), Device: dev})
			return err
		}, "auth_code"},
		{"oversized password", func() error {
			_, err := conn.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{Phone: phone, Password: strings.Repeat("p", 257), Device: dev})
			return err
		}, "password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.call(), codes.InvalidArgument, c.field) })
	}

	a.signIn(conn, phone, "device-0001")
	idCases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"ID check digit", func() error {
			_, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "张三", IdNumber: "110105194912310021"})
			return err
		}, "id_number"},
		{"name", func() error {
			_, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "<b>", IdNumber: "11010519491231002X"})
			return err
		}, "name"},
		{"card Luhn", func() error {
			_, err := conn.Identity.VerifyWithBankCard(bg, &hufuv1.VerifyWithBankCardRequest{Name: "张三", IdNumber: "11010519491231002X",
				CardNumber: "4111111111111112", ReservedPhone: phone})
			return err
		}, "card_number"},
		{"reserved phone", func() error {
			_, err := conn.Identity.VerifyWithBankCard(bg, &hufuv1.VerifyWithBankCardRequest{Name: "张三", IdNumber: "11010519491231002X",
				CardNumber: "4111111111111111", ReservedPhone: "110"})
			return err
		}, "reserved_phone"},
	}
	for _, c := range idCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.call(), codes.InvalidArgument, c.field) })
	}
}

func TestRealNameVerificationByEachMethod(t *testing.T) {
	a := startAppliance(t, nil)
	id := "11010519491231002X"

	cfca := a.dial("cfca-device")
	a.signIn(cfca, "13800000011", "cfca-device")
	_, err := cfca.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "错误", IdNumber: id})
	wantCode(t, err, codes.FailedPrecondition, "")
	v, err := cfca.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "张三", IdNumber: id})
	if err != nil || !v.Identity.Verified || v.Identity.Method != hufuv1.IdentityMethod_IDENTITY_METHOD_CFCA ||
		v.Identity.IdNumberMasked != "110***********002X" || v.Identity.NameMasked != "张*" {
		t.Fatalf("cfca: %v %v", v, err)
	}
	_, err = cfca.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "李四", IdNumber: id})
	wantCode(t, err, codes.FailedPrecondition, "")

	face := a.dial("face-device")
	a.signIn(face, "13800000012", "face-device")
	started, err := face.Identity.StartFaceVerification(bg, &hufuv1.StartFaceVerificationRequest{Name: "王五", IdNumber: id})
	if err != nil || started.Url == "" {
		t.Fatal(err)
	}
	// Someone else cannot complete my face verification.
	_, err = cfca.Identity.CompleteFaceVerification(bg, &hufuv1.CompleteFaceVerificationRequest{CertifyId: started.CertifyId})
	wantCode(t, err, codes.NotFound, "")
	done, err := face.Identity.CompleteFaceVerification(bg, &hufuv1.CompleteFaceVerificationRequest{CertifyId: started.CertifyId})
	if err != nil || done.Identity.Method != hufuv1.IdentityMethod_IDENTITY_METHOD_ALIPAY_FACE {
		t.Fatalf("face: %v %v", done, err)
	}

	card := a.dial("card-device")
	a.signIn(card, "13800000013", "card-device")
	byCard, err := card.Identity.VerifyWithBankCard(bg, &hufuv1.VerifyWithBankCardRequest{Name: "赵六", IdNumber: id,
		CardNumber: "6222020200112233446", ReservedPhone: "13800000013"})
	if err != nil || byCard.Identity.Method != hufuv1.IdentityMethod_IDENTITY_METHOD_BANK_CARD {
		t.Fatalf("bank card: %v %v", byCard, err)
	}
	got, err := card.Identity.GetIdentity(bg, &hufuv1.GetIdentityRequest{})
	if err != nil || !got.Identity.Verified {
		t.Fatalf("get identity: %v", err)
	}
}

func TestWeChatAndCarrierSignIn(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	dev := &hufuv1.Device{Id: "device-0001"}
	first, err := conn.Accounts.SignInWithWechat(bg, &hufuv1.SignInWithWechatRequest{AuthCode: "dev-openid-42", Device: dev})
	if err != nil || first.BindingTicket == "" || first.Session != nil {
		t.Fatalf("unbound WeChat: %v %v", first, err)
	}
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_BIND_WECHAT}); err != nil {
		t.Fatal(err)
	}
	bound, err := conn.Accounts.BindWechatPhone(bg, &hufuv1.BindWechatPhoneRequest{BindingTicket: first.BindingTicket, Phone: phone,
		Code: a.code(phone, accounts.PurposeBindWeChat), Device: dev})
	if err != nil || !bound.Account.WechatBound || !bound.Registered {
		t.Fatalf("bind: %v %v", bound, err)
	}
	second, err := conn.Accounts.SignInWithWechat(bg, &hufuv1.SignInWithWechatRequest{AuthCode: "dev-openid-42", Device: dev})
	if err != nil || second.Session == nil || second.Account.Id != bound.Account.Id {
		t.Fatalf("bound WeChat: %v %v", second, err)
	}
	_, err = conn.Accounts.SignInWithWechat(bg, &hufuv1.SignInWithWechatRequest{AuthCode: "forged", Device: dev})
	wantCode(t, err, codes.Unauthenticated, "")

	carrier, err := conn.Accounts.SignInWithCarrier(bg, &hufuv1.SignInWithCarrierRequest{CarrierToken: "dev-" + phone, Device: dev})
	if err != nil || carrier.Account.Id != bound.Account.Id || carrier.Registered {
		t.Fatalf("carrier: %v %v", carrier, err)
	}
}

func TestResetPasswordRevokesSessions(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	a.signIn(conn, phone, "device-0001")
	if _, err := conn.Accounts.SetPassword(bg, &hufuv1.SetPasswordRequest{NewPassword: "first-pass-1"}); err != nil {
		t.Fatal(err)
	}
	anon := a.dial("device-0002")
	if _, err := anon.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD}); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Accounts.ResetPassword(bg, &hufuv1.ResetPasswordRequest{Phone: phone, Code: a.code(phone, accounts.PurposeResetPassword), NewPassword: "second-pass-2"}); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
	if _, err := anon.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{Phone: phone, Password: "second-pass-2", Device: &hufuv1.Device{Id: "device-0002"}}); err != nil {
		t.Fatal(err)
	}
}
