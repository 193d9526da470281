package daemon_test

import (
	"crypto/rand"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// The per-account key quota through the daemon: keys.max_keys_per_account keys, then
// ResourceExhausted naming the setting; another account is not affected.
func TestKeyQuotaPerAccount(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) { c.Keys.MaxKeysPerAccount = 2 })
	conn, userID := a.verifiedUser("13800000081", "quota-phone-1")
	createKey(t, conn, userID, "quota-key-0001", "123456")
	createKey(t, conn, userID, "quota-key-0002", "123456")

	_, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(userID, "quota-key-0003"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := req.MarshalBinary()
	_, err = hufuv1.NewKeyServiceClient(conn.ClientConn()).CreateKey(bg, &hufuv1.CreateKeyRequest{KeyId: "quota-key-0003", KeygenRequest: raw, Pin: "123456"})
	wantCode(t, err, codes.ResourceExhausted, "")
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "keys.max_keys_per_account = 2") {
		t.Fatalf("the refusal %q does not name the setting", msg)
	}
	other, otherID := a.verifiedUser("13800000082", "quota-phone-2")
	createKey(t, other, otherID, "quota-key-0004", "123456")
}
