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

// ErrLoginNotOffered: the appliance has no provider for this way of signing in (production
// without providers.login). Reported as FailedPrecondition: sign in with an SMS code.
var ErrLoginNotOffered = errors.New("accounts: this way of signing in is not offered here")

// NotOffered is the WeChat and carrier login of an appliance that offers neither: it
// refuses every credential with ErrLoginNotOffered.
type NotOffered struct{}

func (NotOffered) OpenID(context.Context, string) (string, error)      { return "", ErrLoginNotOffered }
func (NotOffered) PhoneNumber(context.Context, string) (string, error) { return "", ErrLoginNotOffered }

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
