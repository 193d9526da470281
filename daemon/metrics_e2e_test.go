package daemon_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// scrapeMetrics reads /metrics as Prometheus does, with the operator's token.
func (a *adminAppliance) scrapeMetrics() map[string]*dto.MetricFamily {
	a.t.Helper()
	code, body := a.call("GET", "/metrics", admin.Operator)
	if code != http.StatusOK {
		a.t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		a.t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// sample returns the value of the series of family name whose labels include want, and
// whether there is one.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// firstNotAfter is the NotAfter of the first certificate in a PEM file.
func firstNotAfter(t *testing.T, path string) time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter
}

// TestMetricsExpiry: on an appliance with the development PKI (gRPC and admin listeners on
// TLS), the expiry gauges are the NotAfter of the certificates in the files and in the CA
// records, the CRL gauge is the nextUpdate of the CRL /crl serves and moves on when the
// clock passes half its validity (an idle appliance's CRL never looks expired), and after a
// SIGHUP-style reload the TLS gauges show the new certificate.
func TestMetricsExpiry(t *testing.T) {
	a := startAdminAppliance(t, func(c *config.Config) {
		f := devpki.FilesIn(filepath.Join(c.DataDir, "tls"))
		c.Admin.CertFile, c.Admin.KeyFile = f.ServerCert, f.ServerKey
	})
	const expiry = "hufu_certificate_expiry_timestamp_seconds"
	wantExpiry := func(fams map[string]*dto.MetricFamily, use, name string, want time.Time) {
		t.Helper()
		got, ok := sample(fams, expiry, map[string]string{"use": use, "name": name})
		if !ok || int64(got) != want.Unix() {
			t.Errorf("%s{use=%q,name=%q} = %v (present %v), want %d (%s)", expiry, use, name, got, ok, want.Unix(), want)
		}
	}

	fams := a.scrapeMetrics()
	server := firstNotAfter(t, a.cfg.TLS.CertFile)
	wantExpiry(fams, "tls", "grpc_server", server)
	wantExpiry(fams, "tls", "admin_server", firstNotAfter(t, a.cfg.Admin.CertFile))
	clientCA := firstNotAfter(t, a.cfg.TLS.ClientCAFile)
	wantExpiry(fams, "tls", "client_ca", clientCA)

	caIDs := a.d.CAIDs()
	if len(caIDs) == 0 {
		t.Fatal("no CA configured")
	}
	crlGauge := func(fams map[string]*dto.MetricFamily, id string) time.Time {
		t.Helper()
		v, ok := sample(fams, "hufu_ca_crl_next_update_timestamp_seconds", map[string]string{"ca": id, "level": "issuing"})
		if !ok {
			t.Fatalf("no CRL nextUpdate for %s", id)
		}
		return time.Unix(int64(v), 0)
	}
	served := func(id string) time.Time {
		t.Helper()
		der, err := a.d.CRL(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		l, err := smx509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		return l.NextUpdate
	}
	for _, id := range caIDs {
		if got, want := crlGauge(fams, id), served(id); !got.Equal(want) {
			t.Errorf("CRL %s: gauge %s, served nextUpdate %s", id, got, want)
		}
	}
	// Past half the CRL's validity with nobody fetching it: the scrape reports the CRL a
	// fetch would get now, signed afresh, not the stale one.
	before := crlGauge(fams, caIDs[0])
	a.clock.Advance(a.cfg.Certificates.CRLNextUpdate.Std()/2 + time.Hour)
	fams = a.scrapeMetrics()
	after := crlGauge(fams, caIDs[0])
	if !after.After(before) || !after.Equal(served(caIDs[0])) {
		t.Errorf("CRL nextUpdate after the clock moved on: %s (before %s, served %s)", after, before, served(caIDs[0]))
	}

	// Pool gauges: the configured sessions minus the login session, idle between requests.
	// The CRL signed afresh above was audited, and the checkpoint that made due signs with
	// an HSM session in the background: wait for it, then look again.
	a.d.AwaitCheckpoint()
	fams = a.scrapeMetrics()
	if v, ok := sample(fams, "hufu_hsm_session_pool_capacity", nil); !ok || int(v) != a.cfg.HSM.MaxSessions-1 {
		t.Errorf("hufu_hsm_session_pool_capacity = %v (present %v), want %d", v, ok, a.cfg.HSM.MaxSessions-1)
	}
	// The scrape itself runs the readiness probes, the HSM's among them, beside the pool's
	// collector: on an idle appliance one session may be the probe's, and none waits.
	if v, ok := sample(fams, "hufu_hsm_session_pool_in_use", nil); !ok || v > 1 {
		t.Errorf("hufu_hsm_session_pool_in_use = %v (present %v), want at most the scrape's own probe on an idle appliance", v, ok)
	}
	if v, ok := sample(fams, "hufu_hsm_session_pool_waiting", nil); !ok || v != 0 {
		t.Errorf("hufu_hsm_session_pool_waiting = %v (present %v), want 0 on an idle appliance", v, ok)
	}

	// A new server certificate (issued a day earlier, so it expires a day earlier) put in
	// place and reloaded as SIGHUP does: both listeners' gauges follow, the client CA's not.
	fresh := devpki.FilesIn(t.TempDir())
	if _, _, err := devpki.Ensure(filepath.Dir(fresh.ServerCert), nil, time.Now().Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{fresh.ServerCert: a.cfg.TLS.CertFile, fresh.ServerKey: a.cfg.TLS.KeyFile} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	renewed := firstNotAfter(t, a.cfg.TLS.CertFile)
	if renewed.Equal(server) {
		t.Fatal("the new certificate expires when the old one does; the test proves nothing")
	}
	if err := a.d.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	fams = a.scrapeMetrics()
	wantExpiry(fams, "tls", "grpc_server", renewed)
	wantExpiry(fams, "tls", "admin_server", renewed)
	wantExpiry(fams, "tls", "client_ca", clientCA)

	// The CA gauges are the NotAfter of the certificates in the CA records, read back
	// from the store once the daemon has stopped.
	a.stop()
	ctx := context.Background()
	kr, err := hsm.Open(ctx, hsm.Config{ModulePath: a.cfg.HSM.Module, TokenLabel: a.cfg.HSM.TokenLabel, PINFile: a.cfg.HSM.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(a.cfg.DataDir, "store"), Signer: kr.AuditSigner()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	for _, id := range caIDs {
		root, issuing, err := ca.Certificates(ctx, st, id)
		if err != nil {
			t.Fatal(err)
		}
		wantExpiry(fams, "ca_root", id, root.NotAfter)
		wantExpiry(fams, "ca_issuing", id, issuing.NotAfter)
		if !issuing.NotAfter.Before(root.NotAfter) {
			t.Errorf("CA %s: issuing certificate outlives the root; the gauges cannot tell them apart", id)
		}
	}
}
