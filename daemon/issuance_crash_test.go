package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/store"
)

// issuanceChildEnv carries the configuration, the clock and the fault point of an appliance
// that TestIssuanceCrashChild serves in a child process, for its parent to SIGKILL.
const issuanceChildEnv = "HUFU_ISSUANCE_CRASH_CHILD"

type issuanceChild struct {
	Config config.Config
	Now    time.Time
	// Point is the issuance fault-injection point where the process stops (and writes
	// Marker) until it is killed.
	Point, Marker string
}

// TestIssuanceCrashChild is the appliance process of TestIssuanceSurvivesSIGKILL: it serves
// until killed, and a payment that reaches the fault point stays there. Run alone it does
// nothing.
func TestIssuanceCrashChild(t *testing.T) {
	spec := os.Getenv(issuanceChildEnv)
	if spec == "" {
		t.Skip("the appliance process of TestIssuanceSurvivesSIGKILL")
	}
	var c issuanceChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	fault := func(point string) {
		if point != c.Point {
			return
		}
		if err := os.WriteFile(c.Marker, []byte(point), 0o600); err != nil {
			panic(err)
		}
		select {} // until SIGKILL
	}
	ctx := context.Background()
	d, err := daemon.Open(ctx, c.Config, daemon.Options{Clock: daemontest.NewClock(c.Now), IssuanceFault: fault,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Fatal(d.Serve(ctx, nil)) // only SIGKILL ends it
}

// startIssuanceChild serves the appliance of cfg in a child process that stops issuance at
// point; it returns when the appliance answers p.
func startIssuanceChild(t *testing.T, cfg config.Config, now time.Time, point, marker string, p *applicant) *exec.Cmd {
	t.Helper()
	spec, err := json.Marshal(issuanceChild{Config: cfg, Now: now, Point: point, Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestIssuanceCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), issuanceChildEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		_, err := p.certs.ListOrders(ctx, &hufuv1.ListOrdersRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("the appliance process did not come up: %v", err)
		}
	}
}

// waitFor waits until the child wrote marker (its payment reached the fault point).
func waitFor(t *testing.T, marker string, paid <-chan error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			return
		}
		select {
		case err := <-paid:
			t.Fatalf("the payment returned before reaching the fault point: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the payment did not reach the fault point")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// issuanceAppliance is a certificate appliance on a fixed gRPC address (a child process
// serves it too) with an auditor's token and an operator's (metrics).
func issuanceAppliance(t *testing.T) (a *certAppl, auditor, operator string) {
	t.Helper()
	auditor, auditorHash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	operator, operatorHash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	return certAppliance(t, func(c *config.Config) {
		c.Listen.GRPC = addr
		c.Admin.Tokens = []config.AdminToken{{Name: "alice", Role: string(admin.Auditor), SHA256: auditorHash},
			{Name: "olga", Role: string(admin.Operator), SHA256: operatorHash}}
	}), auditor, operator
}

// issuanceMetrics reads the issuance gauges and recovery counters from /metrics.
func issuanceMetrics(t *testing.T, a *certAppl, operator string) (pending, completed, revoked float64) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.live.AdminURL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %s %v", resp.Status, err)
	}
	pending, ok := sample(families, "hufu_certs_issuance_reservations", nil)
	if !ok {
		t.Fatal("no hufu_certs_issuance_reservations")
	}
	completed, _ = sample(families, "hufu_certs_issuance_recoveries_total", map[string]string{"outcome": "completed"})
	revoked, _ = sample(families, "hufu_certs_issuance_recoveries_total", map[string]string{"outcome": "revoked"})
	return pending, completed, revoked
}

// auditRecord is one record of an audit export.
type auditRecord struct {
	Type, Actor, Action, Subject string
	Details                      map[string]string
}

// verifiedAudit exports the audit log, verifies it with the appliance's audit key, and
// returns its records.
func verifiedAudit(t *testing.T, a *certAppl, token string) []auditRecord {
	t.Helper()
	export := a.auditExport(token)
	req, _ := http.NewRequest("GET", a.live.AdminURL()+"/audit/public-key", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	block, _ := pem.Decode(body)
	if block == nil {
		t.Fatalf("audit public key: %s %q", resp.Status, body)
	}
	pub, err := smx509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyExport(bytes.NewReader(export), pub.(*ecdsa.PublicKey)); err != nil {
		t.Fatalf("the audit log does not verify: %v", err)
	}
	var out []auditRecord
	for _, line := range strings.Split(strings.TrimSpace(string(export)), "\n") {
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == "record" {
			out = append(out, r)
		}
	}
	return out
}

// reserved returns the serials reserved for order id, from the audit log.
func reserved(records []auditRecord, id string) []string {
	var out []string
	for _, r := range records {
		if r.Action == "cert.reserve" && r.Details["order"] == id {
			out = append(out, strings.Split(r.Details["serials"], ",")...)
		}
	}
	return out
}

func countActions(records []auditRecord, action, subjectSuffix string) int {
	n := 0
	for _, r := range records {
		if r.Action == action && strings.HasSuffix(r.Subject, subjectSuffix) {
			n++
		}
	}
	return n
}

// TestIssuanceSurvivesSIGKILL kills the appliance process while a payment is between
// reserving its certificate and the CA's signature, and between the signature and recording
// it, and once while the order's key is revoked meanwhile. After each restart the order is
// complete with exactly the reserved certificate, or cancelled with its reserved serial on
// the CRL and the payment given back; no reservation is left and the audit log verifies.
func TestIssuanceSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts appliance processes")
	}
	a, auditor, operator := issuanceAppliance(t)
	desk := a.desk()
	dir := t.TempDir()

	for i, point := range []string{certs.FaultIssuingReserved, certs.FaultIssuingSigned} {
		p := newApplicant(t, a, fmt.Sprintf("1380013820%d", i), fmt.Sprintf("issue-crash-%d", i), fmt.Sprintf("issue-crash-key-%d", i))
		o := p.apply()
		if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
			t.Fatal(err)
		}
		a.stop()
		marker := filepath.Join(dir, point)
		child := startIssuanceChild(t, a.cfg, a.clock.Now(), point, marker, p)
		paid := make(chan error, 1)
		go func() { _, err := p.pay(o.Id, "crash-pay-"+o.Id); paid <- err }()
		waitFor(t, marker, paid)
		kill(t, child)
		if err := <-paid; err == nil {
			t.Fatal("the payment answered although the process was killed")
		}
		a.restart() // Open recovers the reservation

		got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o.Id})
		if err != nil {
			t.Fatal(err)
		}
		list, err := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		records := verifiedAudit(t, a, auditor)
		res := reserved(records, o.Id)
		if got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || len(list.Certificates) != 1 || len(res) != 2 || list.Certificates[0].Serial != res[0] || got.Order.Serial != res[0] || got.Order.EncryptionSerial != res[1] {
			t.Fatalf("killed at %s: order %v serial %q, %d certificates, reserved %v", point, got.Order.Status, got.Order.Serial, len(list.Certificates), res)
		}
		for _, serial := range res {
			if n := countActions(records, "cert.issue", serial); n != 1 {
				t.Fatalf("killed at %s: %d cert.issue records of %s", point, n, serial)
			}
			if onCRL(t, a, serial) {
				t.Fatalf("killed at %s: the recovered certificate %s is on the CRL", point, serial)
			}
		}
		if pending, completed, _ := issuanceMetrics(t, a, operator); pending != 0 || completed != 1 {
			t.Fatalf("killed at %s: %v reservations pending, %v recovered (this process)", point, pending, completed)
		}
		// The payer's retry gets the recovered certificate; another payment is refused.
		again, err := p.pay(o.Id, "crash-pay-"+o.Id)
		if err != nil || again.Certificate.GetSerial() != res[0] {
			t.Fatalf("retry after recovery: %v %v", again, err)
		}
		_, err = p.pay(o.Id, "another-"+o.Id)
		wantCode(t, err, codes.FailedPrecondition, "")
	}

	// The key is revoked while the renewal's certificate is reserved: recovery revokes the
	// reserved serial and gives the payment back.
	p := newApplicant(t, a, "13800138209", "issue-crash-9", "issue-crash-key-9")
	first := p.issue(desk)
	r, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "crash-renew", Serial: first, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	marker := filepath.Join(dir, "revoked")
	child := startIssuanceChild(t, a.cfg, a.clock.Now(), certs.FaultIssuingReserved, marker, p)
	paid := make(chan error, 1)
	go func() { _, err := p.pay(r.Order.Id, "crash-renew-pay"); paid <- err }()
	waitFor(t, marker, paid)
	if _, err := p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: first, Pin: "123456", Reason: "lost the phone", ConfirmIrreversible: true}); err != nil {
		t.Fatalf("revoking while the renewal is issuing: %v", err)
	}
	kill(t, child)
	<-paid
	a.restart()
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: r.Order.Id})
	if err != nil {
		t.Fatal(err)
	}
	records := verifiedAudit(t, a, auditor)
	res := reserved(records, r.Order.Id)
	if got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_CANCELLED || got.Order.Serial != "" || len(res) != 2 {
		t.Fatalf("renewal of a revoked key: order %v serial %q, reserved %v", got.Order.Status, got.Order.Serial, res)
	}
	if !onCRL(t, a, res[0]) || !onCRL(t, a, res[1]) {
		t.Fatal("the reserved serial of the undeliverable renewal is not on the CRL")
	}
	if _, err := p.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: res[0]}); statusCode(err) != codes.NotFound {
		t.Fatalf("the revoked reservation is a certificate: %v", err)
	}
	for _, action := range []string{"cert.reserve.abandon", "cert.reserve.revoked"} {
		if n := countActions(records, action, "issuing/"+r.Order.Id); n != 1 {
			t.Fatalf("%d %s records", n, action)
		}
	}
	refunded := false
	for _, rec := range records {
		refunded = refunded || (rec.Action == "order.cancel" && strings.HasSuffix(rec.Subject, r.Order.Id) && rec.Details["payment"] != "")
	}
	if !refunded {
		t.Fatal("no audited cancellation with the payment given back")
	}
	if pending, _, revoked := issuanceMetrics(t, a, operator); pending != 0 || revoked != 1 {
		t.Fatalf("%v reservations pending, %v revoked by recovery", pending, revoked)
	}
	// Recovering again finds nothing to do.
	a.restart()
	if again := verifiedAudit(t, a, auditor); countActions(again, "cert.reserve.revoked", "issuing/"+r.Order.Id) != 1 || countActions(again, "ca.revoke", "") != countActions(records, "ca.revoke", "") {
		t.Fatal("a second recovery acted again")
	}
}

// TestConcurrentPaymentsAndCancelIssueOnce races payments with different idempotency keys,
// and a payment against a cancellation: exactly one certificate, nothing signed for the
// losers (the CRL stays empty), no reservation left.
func TestConcurrentPaymentsAndCancelIssueOnce(t *testing.T) {
	a, auditor, operator := issuanceAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, "13800138301", "race-dev-1", "race-key-1")
	o := p.apply()
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	serials := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := p.pay(o.Id, fmt.Sprintf("race-pay-%d", i))
			errs[i] = err
			if err == nil {
				serials[i] = resp.Certificate.Serial
			}
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch statusCode(err) {
		case codes.OK:
			won++
			if serials[i] == "" {
				t.Fatal("a payment succeeded without a certificate")
			}
		case codes.FailedPrecondition:
		default:
			t.Fatalf("payment %d: %v", i, err)
		}
	}
	list, _ := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{})
	if won != 1 || len(list.Certificates) != 1 {
		t.Fatalf("%d payments won, %d certificates stored", won, len(list.Certificates))
	}

	// A payment racing a cancellation: one of them wins; if the payment won, the cancel is
	// refused, and if the cancel won, nothing was signed.
	q := newApplicant(t, a, "13800138302", "race-dev-2", "race-key-2")
	o2 := q.apply()
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o2.Id}); err != nil {
		t.Fatal(err)
	}
	var payErr, cancelErr error
	wg.Go(func() { _, payErr = q.pay(o2.Id, "race-pay-cancel") })
	wg.Go(func() {
		_, cancelErr = q.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: o2.Id, Reason: "changed my mind"})
	})
	wg.Wait()
	got, err := q.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o2.Id})
	if err != nil {
		t.Fatal(err)
	}
	qlist, _ := q.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{})
	switch {
	case payErr == nil && statusCode(cancelErr) == codes.FailedPrecondition:
		if got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || len(qlist.Certificates) != 1 {
			t.Fatalf("the payment won: order %v, %d certificates", got.Order.Status, len(qlist.Certificates))
		}
	case cancelErr == nil && statusCode(payErr) == codes.FailedPrecondition:
		if got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_CANCELLED || len(qlist.Certificates) != 0 {
			t.Fatalf("the cancellation won: order %v, %d certificates", got.Order.Status, len(qlist.Certificates))
		}
	default:
		t.Fatalf("payment %v, cancellation %v", payErr, cancelErr)
	}

	// Nothing was signed for a loser: no reservation was ever revoked, none is left, and
	// every reservation was recorded.
	records := verifiedAudit(t, a, auditor)
	if c := countActions(records, "ca.revoke", ""); c != 0 {
		t.Fatalf("%d serials revoked", c)
	}
	if r, i := countActions(records, "cert.reserve", ""), countActions(records, "cert.issue", ""); 2*r != i {
		t.Fatalf("%d reservations, %d certificates issued", r, i)
	}
	if pending, _, _ := issuanceMetrics(t, a, operator); pending != 0 {
		t.Fatalf("%v reservations left", pending)
	}
}

// TestIssuanceRecoveryBesideALivePayment holds a payment between the CA's signature and
// recording it while recovery runs, twice, and while the payer retries with the same
// idempotency key: recovery leaves the order to the payment (its claim), the retry waits for
// it, and both answers carry the one certificate.
func TestIssuanceRecoveryBesideALivePayment(t *testing.T) {
	a, auditor, _ := issuanceAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, "13800138401", "live-dev-1", "live-key-1")
	o := p.apply()
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
		t.Fatal(err)
	}
	held, release := holdIssuanceAt(a, certs.FaultIssuingSigned)
	type answer struct {
		serial string
		err    error
	}
	answers := make(chan answer, 2)
	pay := func() {
		resp, err := p.pay(o.Id, "live-pay")
		answers <- answer{resp.GetCertificate().GetSerial(), err}
	}
	go pay()
	select {
	case <-held:
	case ans := <-answers:
		t.Fatalf("the payment returned before it was held: %v", ans.err)
	}
	// Reserved and signed, not recorded: the order shows as awaiting payment, and another
	// payment is refused before any charge.
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o.Id})
	if err != nil || got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT || got.Order.Steps[len(got.Order.Steps)-1].Name != "paid" {
		t.Fatalf("mid-issue order: %v %v", got, err)
	}
	_, err = p.pay(o.Id, "live-pay-other")
	wantCode(t, err, codes.FailedPrecondition, "")
	go pay() // the same key: waits for the first
	for range 2 {
		completed, revoked, err := a.live.Daemon.RecoverIssuance(bg, 0)
		if err != nil || completed+revoked != 0 {
			t.Fatalf("recovery beside a live payment: completed %d, revoked %d, %v", completed, revoked, err)
		}
	}
	close(release)
	first, second := <-answers, <-answers
	if first.err != nil || second.err != nil || first.serial == "" || first.serial != second.serial {
		t.Fatalf("answers %+v %+v", first, second)
	}
	if completed, revoked, err := a.live.Daemon.RecoverIssuance(bg, 0); err != nil || completed+revoked != 0 {
		t.Fatalf("recovery after the payment: completed %d, revoked %d, %v", completed, revoked, err)
	}
	records := verifiedAudit(t, a, auditor)
	if r, i := countActions(records, "cert.reserve", ""), countActions(records, "cert.issue", ""); r != 1 || i != 2 {
		t.Fatalf("%d reservations, %d certificates issued", r, i)
	}
}

// TestLivePaymentWhoseKeyIsRevokedMidIssue holds a renewal's payment after its reservation
// while the holder revokes the key: the payment's own recording is refused, so it revokes the
// reserved serial, cancels the order and gives the payment back, and says so.
func TestLivePaymentWhoseKeyIsRevokedMidIssue(t *testing.T) {
	a, auditor, operator := issuanceAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, "13800138501", "mid-dev-1", "mid-key-1")
	first := p.issue(desk)
	r, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "mid-renew", Serial: first, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	held, release := holdIssuanceAt(a, certs.FaultIssuingReserved)
	paid := make(chan error, 1)
	go func() { _, err := p.pay(r.Order.Id, "mid-renewal-pay"); paid <- err }()
	select {
	case <-held:
	case err := <-paid:
		t.Fatalf("the payment returned before its reservation was held: %v", err)
	}
	if _, err := p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: r.Order.Id, Reason: "too late"}); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("cancelling an issuing order: %v", err)
	}
	if _, err := p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: first, Pin: "123456", Reason: "lost", ConfirmIrreversible: true}); err != nil {
		t.Fatalf("revoking while the renewal is issuing: %v", err)
	}
	close(release)
	err = <-paid
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(errMessage(err), "given back") {
		t.Fatalf("the refusal does not say the payment is given back: %v", err)
	}
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: r.Order.Id})
	if err != nil || got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Fatalf("order after the refused recording: %v %v", got, err)
	}
	records := verifiedAudit(t, a, auditor)
	res := reserved(records, r.Order.Id)
	if len(res) != 2 || !onCRL(t, a, res[0]) || !onCRL(t, a, res[1]) {
		t.Fatalf("reserved %v: not on the CRL", res)
	}
	list, _ := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_NO_LONGER_VALID})
	for _, c := range list.Certificates {
		if slices.Contains(res, c.Serial) {
			t.Fatal("the revoked reservation became a certificate")
		}
	}
	if pending, completed, revoked := issuanceMetrics(t, a, operator); pending != 0 || completed+revoked != 0 {
		t.Fatalf("pending %v, recovered %v/%v: the payment resolved it itself", pending, completed, revoked)
	}
}

// holdIssuanceAt restarts the appliance with a fault hook that stops the first payment to
// reach point there until release is closed; held closes when it gets there.
func holdIssuanceAt(a *certAppl, point string) (held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	a.live.IssuanceFault = func(p string) {
		if p == point {
			once.Do(func() { close(held); <-release })
		}
	}
	a.restart()
	return held, release
}
