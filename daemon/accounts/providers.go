package accounts

import (
	"context"
	"errors"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/identity"
)

// ErrProviderRejected: a login provider did not accept the code or token it was given
// (expired, used, forged). Reported as Unauthenticated.
var ErrProviderRejected = errors.New("accounts: the login provider rejected the credential")

// WeChat exchanges a WeChat OAuth authorisation code for the user's openid (sns/oauth2
// access_token). A real implementation holds the app id and secret; it returns
// ErrProviderRejected for a bad code and another error when WeChat is unreachable.
type WeChat interface {
	OpenID(ctx context.Context, authCode string) (string, error)
}

// Carrier resolves a carrier one-click login token (China Mobile, Unicom, Telecom number
// authentication) to the phone number of the SIM that requested it, with the same error
// contract as WeChat.
type Carrier interface {
	PhoneNumber(ctx context.Context, token string) (string, error)
}

// DevWeChat accepts authorisation codes "dev-<openid>", for development and tests.
type DevWeChat struct{}

func (DevWeChat) OpenID(_ context.Context, authCode string) (string, error) {
	id, ok := strings.CutPrefix(authCode, "dev-")
	if !ok || id == "" || len(id) > 64 || strings.ContainsAny(id, "/\x00") {
		return "", ErrProviderRejected
	}
	return id, nil
}

// DevCarrier accepts tokens "dev-<phone number>", for development and tests.
type DevCarrier struct{}

func (DevCarrier) PhoneNumber(_ context.Context, token string) (string, error) {
	phone, ok := strings.CutPrefix(token, "dev-")
	if !ok || identity.CheckMobile(phone) != nil {
		return "", ErrProviderRejected
	}
	return phone, nil
}
