package daemon_test

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestHSMOutageRecoversWithoutRestart closes every session on the appliance's real SoftHSM2
// token behind its back (as a token reset or a module restart does) while the PIN file is
// away, so the keyring cannot log in again: calls that need the HSM fail with UNAVAILABLE
// (never INTERNAL), /readyz and hufu_hsm_available say not ready, failed reopens are
// counted. With the PIN file back the keyring reconnects by itself: ready again, keys are
// created and a key made before the outage signs, and the reopen is counted; the daemon
// was never restarted.
func TestHSMOutageRecoversWithoutRestart(t *testing.T) {
	a := startAdminAppliance(t, func(c *config.Config) {
		c.HSM.ReopenBackoff, c.HSM.ReopenMaxBackoff = config.Duration(20*time.Millisecond), config.Duration(100*time.Millisecond)
	})
	conn, userID := a.verifiedUser(phone, "device-0001")
	before := createKey(t, conn, userID, "key-before-outage", "123456")

	metrics := func() map[string]float64 {
		t.Helper()
		code, body := a.call("GET", "/metrics", admin.MetricsReader)
		if code != http.StatusOK {
			t.Fatalf("metrics: %d %s", code, body)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, name := range []string{"hufu_hsm_available", "hufu_hsm_outages_total"} {
			if f := families[name]; f != nil {
				out[name] = f.GetMetric()[0].GetGauge().GetValue() + f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		for _, m := range families["hufu_hsm_reopens_total"].GetMetric() {
			out["hufu_hsm_reopens_total/"+m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
		return out
	}
	if m := metrics(); m["hufu_hsm_available"] != 1 || m["hufu_hsm_outages_total"] != 0 {
		t.Fatalf("metrics before the outage: %v", m)
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	pinFile := a.cfg.HSM.PINFile
	if err := os.Rename(pinFile, pinFile+".away"); err != nil {
		t.Fatal(err)
	}
	p, _, slot := softhsmtest.Session(t, &softhsm.Token{ModulePath: a.cfg.HSM.Module, Label: a.cfg.HSM.TokenLabel})
	if err := p.CloseAllSessions(slot); err != nil {
		t.Fatal(err)
	}

	keys := hufuv1.NewKeyServiceClient(conn.ClientConn())
	_, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(userID, "key-during-outage"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := req.MarshalBinary()
	for i := range 3 { // the first call may be the one that finds the sessions gone
		_, err := keys.CreateKey(bg, &hufuv1.CreateKeyRequest{KeyId: "key-during-outage", KeygenRequest: raw, Pin: "123456", Label: "test"})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("CreateKey %d during the outage: %v; want UNAVAILABLE", i, err)
		}
	}
	eventually("readyz not ready", func() bool {
		code, body := a.call("GET", "/readyz?verbose", admin.Operator)
		return code == http.StatusServiceUnavailable && strings.Contains(string(body), "[-]hsm failed: hsm: health: HSM operation failed: HSM unavailable, reconnecting")
	})
	eventually("a failed reopen counted", func() bool { return metrics()["hufu_hsm_reopens_total/error"] > 0 })
	if m := metrics(); m["hufu_hsm_available"] != 0 || m["hufu_hsm_outages_total"] != 1 || m["hufu_hsm_reopens_total/ok"] != 0 {
		t.Fatalf("metrics during the outage: %v", m)
	}

	if err := os.Rename(pinFile+".away", pinFile); err != nil {
		t.Fatal(err)
	}
	eventually("readyz ready again", func() bool {
		code, _ := a.call("GET", "/readyz", "")
		return code == http.StatusOK
	})
	createKey(t, conn, userID, "key-after-outage", "123456")
	// The PIN key works again (a ticket needs a PIN verification in the HSM), and the key
	// made before the outage signs.
	if _, err := keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: before.id, Pin: "123456"}); err != nil {
		t.Fatalf("OpenTicket after the recovery: %v", err)
	}
	if _, err := before.signer().Sign(rand.Reader, []byte("bid"), &cosign.SignerOpts{}); err != nil {
		t.Fatalf("sign with the key made before the outage: %v", err)
	}
	if m := metrics(); m["hufu_hsm_available"] != 1 || m["hufu_hsm_outages_total"] != 1 || m["hufu_hsm_reopens_total/ok"] != 1 {
		t.Fatalf("metrics after the recovery: %v", m)
	}
}
