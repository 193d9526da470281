package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
)

// openingFlags are the flags of `hufu bench -op opening`, registered on the bench's flag set.
type openingFlags struct {
	bidders, envelopes, concurrency, accounts, setupConcurrency int
	lead                                                        time.Duration
	liveT1                                                      bool
}

func addOpeningFlags(fs *flag.FlagSet) *openingFlags {
	f := &openingFlags{}
	fs.IntVar(&f.bidders, "bidders", 200, "opening: bidders, each with a split key and a certificate")
	fs.IntVar(&f.envelopes, "envelopes", 10, "opening: envelopes per bidder")
	fs.IntVar(&f.concurrency, "concurrency", 200, "opening: bidders consenting at once")
	fs.IntVar(&f.accounts, "accounts", 0, "opening: accounts the bidders' keys are spread over (0: one account per bidder)")
	fs.IntVar(&f.setupConcurrency, "setup-concurrency", 16, "opening: bidders set up at once")
	fs.DurationVar(&f.lead, "lead", 0, "opening: from the opening's creation to its window start (0: 5s + 0.5ms per envelope)")
	fs.BoolVar(&f.liveT1, "live-t1", false, "opening: compute the consent points T1 inside the measured consent (default: before the window, as the phones' own CPUs would)")
	return f
}

// Targets of the opening bench (reported, never asserted).
const (
	openingTargetConsentP99Ms = 50
	openingTargetCPURatio     = 1.10
	openingTargetWallRatio    = 1.2
)

// openingBenchReport is what `hufu bench -op opening` prints as JSON: a whole bid opening on
// a development appliance — setup, the bidders' consent by scanning a hall code, the bulk
// release measured against the raw release step of the same run (design §6), and the
// signed report verified offline.
type openingBenchReport struct {
	Operation          string               `json:"operation"`
	Bidders            int                  `json:"bidders"`
	EnvelopesPerBidder int                  `json:"envelopes_per_bidder"`
	Envelopes          int                  `json:"envelopes"`
	Accounts           int                  `json:"accounts"`
	Cores              int                  `json:"cores"`
	OpeningID          string               `json:"opening_id"`
	Setup              openingSetupReport   `json:"setup"`
	Registration       openingRegistration  `json:"registration"`
	Consent            openingConsentReport `json:"consent"`
	Release            openingReleaseReport `json:"release"`
	Report             openingReportCheck   `json:"report"`
	Errors             int64                `json:"errors"`
	FirstError         string               `json:"first_error,omitempty"`
}

type openingSetupReport struct {
	Concurrency      int     `json:"concurrency"`
	AccountsSeconds  float64 `json:"accounts_seconds"`
	CertsSeconds     float64 `json:"keys_and_certificates_seconds"`
	BiddersPerSecond float64 `json:"bidders_per_second"`
	EnvelopesSeconds float64 `json:"envelopes_seconds"`
	Seconds          float64 `json:"seconds"`
}

type openingRegistration struct {
	LeadSeconds        float64 `json:"lead_seconds"`
	Calls              int     `json:"calls"`
	Seconds            float64 `json:"seconds"`
	EnvelopesPerSecond float64 `json:"envelopes_per_second"`
	SealMs             float64 `json:"seal_ms"`
	WaitedSeconds      float64 `json:"waited_for_window_seconds"`
}

type openingLatency struct {
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

type openingConsentReport struct {
	Concurrency       int     `json:"concurrency"`
	PhoneT1           string  `json:"phone_t1"` // "precomputed" or "live"
	Seconds           float64 `json:"seconds"`
	Completed         int64   `json:"completed"`
	Errors            int64   `json:"errors"`
	ConsentsPerSecond float64 `json:"consents_per_second"`
	openingLatency
	Steps            map[string]openingLatency `json:"steps"`
	DaemonCPUSeconds float64                   `json:"daemon_cpu_seconds,omitempty"`
	DaemonCPUPerMs   float64                   `json:"daemon_cpu_ms_per_consent,omitempty"`
	DaemonSysPerMs   float64                   `json:"daemon_sys_ms_per_consent,omitempty"`
	BenchCPUSeconds  float64                   `json:"bench_cpu_seconds"`
	// CPU seconds of every other process on the host meanwhile (a shared machine's noise).
	OtherCPUSeconds float64 `json:"other_processes_cpu_seconds"`
	TargetP99Ms     float64 `json:"target_p99_ms"`
	MeetsTarget     bool    `json:"meets_target"`
}

type openingReleaseReport struct {
	Seconds float64 `json:"seconds"`
	// From the call to the first answer: the daemon lists the consented envelopes and
	// computes the first chunk before it answers anything.
	FirstAnswerMs      float64 `json:"first_answer_ms"`
	Answers            int     `json:"answers"`
	Released           int     `json:"released"`
	Errors             int     `json:"errors"`
	Mismatches         int     `json:"key_mismatches"`
	Missing            int     `json:"missing"`
	EnvelopesPerSecond float64 `json:"envelopes_per_second"`
	DaemonCPUSeconds   float64 `json:"daemon_cpu_seconds,omitempty"`
	DaemonCPUPerItem   float64 `json:"daemon_cpu_us_per_envelope,omitempty"`
	DaemonSysPerItem   float64 `json:"daemon_sys_us_per_envelope,omitempty"`
	RawStepCPU         float64 `json:"raw_step_cpu_us"`
	Ratio              float64 `json:"ratio_to_raw_step,omitempty"`
	TargetRatio        float64 `json:"target_ratio"`
	// wall / (envelopes × raw step / cores): how close the release comes to every core
	// doing nothing but the raw step.
	WallRatio       float64 `json:"wall_ratio"`
	TargetWallRatio float64 `json:"target_wall_ratio"`
	BenchCPUSeconds float64 `json:"bench_cpu_seconds"`
	OtherCPUSeconds float64 `json:"other_processes_cpu_seconds"`
	// The daemon's resident memory (kB): before and after, the peak sampled every 20 ms
	// during the release, and the kernel's high-water mark (reset just before the release
	// when HWMReset).
	RSSBeforeKB int64 `json:"daemon_rss_before_kb,omitempty"`
	RSSAfterKB  int64 `json:"daemon_rss_after_kb,omitempty"`
	RSSPeakKB   int64 `json:"daemon_rss_peak_sampled_kb,omitempty"`
	HWMBeforeKB int64 `json:"daemon_hwm_before_kb,omitempty"`
	HWMAfterKB  int64 `json:"daemon_hwm_after_kb,omitempty"`
	HWMReset    bool  `json:"daemon_hwm_reset,omitempty"`
}

type openingReportCheck struct {
	CloseMs        float64 `json:"close_ms"`
	DownloadMs     float64 `json:"download_ms"`
	Bytes          int     `json:"bytes"`
	Lines          int     `json:"lines"`
	SHA256Matches  bool    `json:"sha256_matches"`
	Verified       bool    `json:"verified"`
	VerifyMs       float64 `json:"verify_ms"`
	Consents       int     `json:"consents"`
	Releases       int     `json:"releases"`
	ManifestLength int     `json:"envelopes"`
}

// obAccount is a bench account: a phone on its own device, signed in.
type obAccount struct {
	conn   *client.Conn
	userID string
	phone  hufuv1.PhoneScanServiceClient
}

// obEnvelope is one registered bid: the SM4 key, its SM2 envelope to the bidder's
// certificate, and the consent point T1 = d1⁻¹·C1 of the bidder's phone.
type obEnvelope struct {
	id  string
	key []byte
	ct  []byte
	t1  cosign.Point
}

// obBidder is a bidder: an account, a split key whose phone share is in the bench's memory,
// an issued certificate, and the envelopes of their bids.
type obBidder struct {
	acct   *obAccount
	keyID  string
	public cosign.Point
	share  *cosign.PhoneShare
	serial string
	pub    *ecdsa.PublicKey
	envs   []*obEnvelope
}

// obRun is one run of the opening bench.
type obRun struct {
	c        *cli
	f        *openingFlags
	run      string // random, in every name the run makes
	pin      string
	bidders  []*obBidder
	accounts []*obAccount
	sys      hufuv1.OpeningServiceClient
	scans    hufuv1.ScanServiceClient
	desk     hufuv1.ReviewServiceClient
	platform string
	caID     string

	errs     atomic.Int64
	firstErr atomic.Value
}

func (r *obRun) fail(err error) {
	r.errs.Add(1)
	r.firstErr.CompareAndSwap(nil, err.Error())
}

// benchOpening runs a whole bid opening on a development daemon and reports it (see
// openingBenchReport). pid is the daemon's, for its CPU time and memory (0: not measured).
func (c *cli) benchOpening(ctx context.Context, f *openingFlags, pid int, jsonOut string) error {
	if f.bidders < 1 || f.envelopes < 1 || f.concurrency < 1 || f.setupConcurrency < 1 || f.accounts < 0 {
		return usagef("-bidders, -envelopes, -concurrency and -setup-concurrency must be at least 1")
	}
	if f.accounts == 0 || f.accounts > f.bidders {
		f.accounts = f.bidders
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	r := &obRun{c: c, f: f, run: hex.EncodeToString(rnd[:]), pin: "246810"}
	total := f.bidders * f.envelopes
	rep := openingBenchReport{Operation: "opening", Bidders: f.bidders, EnvelopesPerBidder: f.envelopes, Envelopes: total,
		Accounts: f.accounts, Cores: runtime.NumCPU()}

	// 1. Setup, not measured: accounts, keys, certificates through the order flow, envelopes.
	if err := r.dialSystem(); err != nil {
		return err
	}
	setupStart := time.Now()
	fmt.Fprintf(c.errOut, "setup: %d accounts, %d keys with certificates (%d at once) ...\n", f.accounts, f.bidders, f.setupConcurrency)
	if err := r.setupAccounts(ctx); err != nil {
		return err
	}
	defer func() {
		for _, a := range r.accounts {
			if a != nil {
				a.conn.Close()
			}
		}
	}()
	rep.Setup.AccountsSeconds = time.Since(setupStart).Seconds()
	t := time.Now()
	if err := r.setupBidders(ctx); err != nil {
		return err
	}
	rep.Setup.CertsSeconds = time.Since(t).Seconds()
	t = time.Now()
	if err := r.makeEnvelopes(); err != nil {
		return err
	}
	rep.Setup.EnvelopesSeconds = time.Since(t).Seconds()
	rep.Setup.Concurrency = f.setupConcurrency
	rep.Setup.Seconds = time.Since(setupStart).Seconds()
	rep.Setup.BiddersPerSecond = float64(f.bidders) / rep.Setup.Seconds
	fmt.Fprintf(c.errOut, "setup: %d bidders in %.1fs (accounts %.1fs, keys and certificates %.1fs, %d envelopes %.1fs)\n",
		f.bidders, rep.Setup.Seconds, rep.Setup.AccountsSeconds, rep.Setup.CertsSeconds, total, rep.Setup.EnvelopesSeconds)

	// 2. The bid-opening system: create, register, seal, wait for the opening time.
	lead := f.lead
	if lead == 0 {
		lead = 5*time.Second + time.Duration(total)*500*time.Microsecond
	}
	rep.Registration.LeadSeconds = lead.Seconds()
	start := time.Now().Add(lead)
	projectCode := "BENCH-" + r.run
	created, err := r.sys.CreateOpening(ctx, &hufuv1.CreateOpeningRequest{RequestId: "bench-opening-" + r.run, ProjectCode: projectCode,
		ProjectName: "hufu bench opening " + r.run, PlatformId: r.platform,
		WindowStart: timestamppb.New(start), WindowEnd: timestamppb.New(start.Add(time.Hour))})
	if err != nil {
		return fmt.Errorf("create opening: %w", err)
	}
	openingID := created.Opening.Id
	rep.OpeningID = openingID
	t = time.Now()
	regs := make([]*hufuv1.EnvelopeRegistration, 0, total)
	for _, b := range r.bidders {
		for _, e := range b.envs {
			regs = append(regs, &hufuv1.EnvelopeRegistration{EnvelopeId: e.id, CertificateSerial: b.serial, Ciphertext: e.ct})
		}
	}
	for i := 0; i < len(regs); i += 1000 {
		part := regs[i:min(i+1000, len(regs))]
		if _, err := r.sys.RegisterEnvelopes(ctx, &hufuv1.RegisterEnvelopesRequest{OpeningId: openingID, Envelopes: part}); err != nil {
			return fmt.Errorf("register envelopes %d to %d (a longer -lead may be needed): %w", i, i+len(part), err)
		}
		rep.Registration.Calls++
	}
	rep.Registration.Seconds = time.Since(t).Seconds()
	rep.Registration.EnvelopesPerSecond = float64(total) / rep.Registration.Seconds
	t = time.Now()
	if _, err := r.sys.SealOpening(ctx, &hufuv1.SealOpeningRequest{OpeningId: openingID}); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	rep.Registration.SealMs = obMillis(time.Since(t))
	fmt.Fprintf(c.errOut, "opening %s: %d envelopes registered in %.2fs (%.0f/s), sealed; opens in %.1fs\n",
		openingID, total, rep.Registration.Seconds, rep.Registration.EnvelopesPerSecond, time.Until(start).Seconds())
	waited := time.Now()
	select {
	case <-time.After(time.Until(start) + 50*time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	rep.Registration.WaitedSeconds = time.Since(waited).Seconds()

	// 3. Consent, measured: every bidder scans the hall code.
	hall, err := r.scans.CreateSession(ctx, &hufuv1.CreateSessionRequest{RequestId: "bench-hall-" + r.run, Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT,
		OpeningId: openingID, Hall: true, TtlSeconds: 1800})
	if err != nil {
		return fmt.Errorf("hall code: %w", err)
	}
	keyResp, err := r.scans.GetScanKey(ctx, &hufuv1.GetScanKeyRequest{})
	if err != nil {
		return err
	}
	scanKey, err := client.ParseScanKey(keyResp.PublicKeyPem)
	if err != nil {
		return err
	}
	if _, err := client.VerifyQR(scanKey, hall.Session.QrPayload); err != nil {
		return fmt.Errorf("the hall code does not verify under the scan key: %w", err)
	}
	consented := r.consentAll(ctx, hall.Session.QrPayload, openingID, projectCode, pid, &rep.Consent)
	fmt.Fprintf(c.errOut, "consent: %d bidders (%d at once) in %.2fs: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; %d errors\n",
		rep.Consent.Completed, rep.Consent.Concurrency, rep.Consent.Seconds, rep.Consent.P50Ms, rep.Consent.P90Ms, rep.Consent.P99Ms, rep.Consent.MaxMs, rep.Consent.Errors)

	// 4. Release, measured: one stream of every consented envelope.
	if err := r.release(ctx, openingID, consented, pid, &rep.Release); err != nil {
		return err
	}
	fmt.Fprintf(c.errOut, "release: %d envelopes in %.3fs (%.0f/s), daemon %.1f µs/envelope against raw %.1f µs (ratio %.2f), wall ratio %.2f; %d errors, %d mismatches\n",
		rep.Release.Answers, rep.Release.Seconds, rep.Release.EnvelopesPerSecond, rep.Release.DaemonCPUPerItem, rep.Release.RawStepCPU,
		rep.Release.Ratio, rep.Release.WallRatio, rep.Release.Errors, rep.Release.Mismatches)

	// 5. Close, download the report, verify it offline under the audit key.
	if err := r.closeAndVerify(ctx, openingID, scanKey, &rep.Report); err != nil {
		r.fail(err)
	}
	fmt.Fprintf(c.errOut, "report: %d bytes, %d lines, verified %v in %.1f ms\n", rep.Report.Bytes, rep.Report.Lines, rep.Report.Verified, rep.Report.VerifyMs)

	rep.Errors = r.errs.Load()
	if e := r.firstErr.Load(); e != nil {
		rep.FirstError = e.(string)
		fmt.Fprintf(c.errOut, "first error: %s\n", rep.FirstError)
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Fprintln(c.out, string(out))
	if jsonOut != "" {
		return os.WriteFile(jsonOut, append(out, '\n'), 0o644)
	}
	return nil
}

// dialSystem connects as the bid-opening system and the review desk: the client certificate
// of -tls-cert/-tls-key, by default the development CLI certificate.
func (r *obRun) dialSystem() error {
	cert, key := r.c.cert, r.c.key
	if cert == "" {
		cert, key = filepath.Join(r.c.daemonDir, "tls", "cli.pem"), filepath.Join(r.c.daemonDir, "tls", "cli-key.pem")
	}
	conn, err := client.Dial(client.Config{Addr: r.c.addr, CAFile: r.c.ca, ClientCertFile: cert, ClientKeyFile: key, DeviceID: "bench-bos-" + r.run})
	if err != nil {
		return err
	}
	cc := conn.ClientConn()
	r.sys, r.scans, r.desk = hufuv1.NewOpeningServiceClient(cc), hufuv1.NewScanServiceClient(cc), hufuv1.NewReviewServiceClient(cc)
	return nil
}

// obParallel runs fn(0..n-1) on workers goroutines and returns the first error; after an
// error no new item starts.
func obParallel(n, workers int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		first atomic.Value
		wg    sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && first.Load() == nil; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// setupAccounts signs in the bench accounts through the development carrier one-click login
// ("dev-<phone>": no SMS code, so none of the SMS rate limits) and verifies their identity.
func (r *obRun) setupAccounts(ctx context.Context) error {
	r.accounts = make([]*obAccount, r.f.accounts)
	err := obParallel(r.f.accounts, r.f.setupConcurrency, func(i int) error {
		device := fmt.Sprintf("bench-%s-%05d", r.run, i)
		conn, err := client.Dial(client.Config{Addr: r.c.addr, CAFile: r.c.ca, DeviceID: device})
		if err != nil {
			return err
		}
		// 199 + the run's 3 hex digits' worth + the index: unique within a run.
		phone := fmt.Sprintf("199%03d%05d", obRunNumber(r.run)%1000, i)
		in, err := conn.Accounts.SignInWithCarrier(ctx, &hufuv1.SignInWithCarrierRequest{CarrierToken: "dev-" + phone,
			Device: &hufuv1.Device{Id: device, Name: "hufu bench bidder"}})
		if err != nil {
			conn.Close()
			return fmt.Errorf("sign in %s (the bench needs a development daemon): %w", phone, err)
		}
		conn.SetAccessToken(in.Session.AccessToken)
		if !in.Account.GetIdentity().GetVerified() {
			if _, err := conn.Identity.VerifyWithCfca(ctx, &hufuv1.VerifyWithCfcaRequest{Name: "压测", IdNumber: "11010519491231002X"}); err != nil {
				conn.Close()
				return fmt.Errorf("verify identity of %s: %w", phone, err)
			}
		}
		r.accounts[i] = &obAccount{conn: conn, userID: in.Account.Id, phone: hufuv1.NewPhoneScanServiceClient(conn.ClientConn())}
		return nil
	})
	if err != nil {
		return err
	}
	a := r.accounts[0].conn
	plats, err := a.Platforms.ListPlatforms(ctx, &hufuv1.ListPlatformsRequest{})
	if err != nil || len(plats.Platforms) == 0 {
		return fmt.Errorf("platforms: %v %w", plats, err)
	}
	r.platform = plats.Platforms[0].Id
	cas, err := hufuv1.NewCertificateServiceClient(a.ClientConn()).ListCertificateAuthorities(ctx, &hufuv1.ListCertificateAuthoritiesRequest{})
	if err != nil || len(cas.Authorities) == 0 {
		return fmt.Errorf("certificate authorities: %v %w", cas, err)
	}
	r.caID = cas.Authorities[0].Id
	return nil
}

// obRunNumber turns the run's hex id into a number for phone numbers.
func obRunNumber(run string) int {
	n, _ := strconv.ParseInt(run, 16, 64)
	return int(n)
}

// setupBidders makes each bidder's two split keys and takes its certificate pair through the
// real order flow: ApplyCertificate with a CSR per key signed by that key and an
// authorisation letter signed by the signing key, the review desk's ApproveOrder, PayOrder
// with the development method, and the download of the issued encryption certificate, whose
// public key the envelopes are encrypted to (the bidder's key below is the encryption key).
func (r *obRun) setupBidders(ctx context.Context) error {
	r.bidders = make([]*obBidder, r.f.bidders)
	var done atomic.Int64
	stop := r.progress("  certificates", &done, r.f.bidders)
	defer stop()
	return obParallel(r.f.bidders, r.f.setupConcurrency, func(i int) error {
		acct := r.accounts[i%len(r.accounts)]
		signKeyID := fmt.Sprintf("bench-open-%s-%05d", r.run, i)
		b := &obBidder{acct: acct, keyID: signKeyID + "-enc"}
		makeKey := func(keyID string) (*cosign.Key, *cosign.PhoneShare, cosign.Point, error) {
			phoneKG, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(acct.userID, keyID))
			if err != nil {
				return nil, nil, cosign.Point{}, err
			}
			raw, _ := req.MarshalBinary()
			resp, err := acct.conn.Keys.CreateKey(ctx, &hufuv1.CreateKeyRequest{KeyId: keyID, KeygenRequest: raw, Pin: r.pin, Label: "bench opening"})
			if err != nil {
				return nil, nil, cosign.Point{}, fmt.Errorf("create key: %w", err)
			}
			var kresp cosign.KeygenResponse
			if err := kresp.UnmarshalBinary(resp.KeygenResponse); err != nil {
				return nil, nil, cosign.Point{}, err
			}
			share, public, err := phoneKG.Finish(&kresp)
			if err != nil {
				return nil, nil, cosign.Point{}, err
			}
			return cosign.NewKey(public, share, &client.Remote{Conn: acct.conn, KeyID: keyID, Credential: client.PINCredential(r.pin)}), share, public, nil
		}
		signer, _, _, err := makeKey(signKeyID)
		if err != nil {
			return err
		}
		encrypter, share, public, err := makeKey(b.keyID)
		if err != nil {
			return err
		}
		b.share, b.public = share, public
		csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, signer)
		if err != nil {
			return fmt.Errorf("CSR: %w", err)
		}
		encCSR, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, encrypter)
		if err != nil {
			return fmt.Errorf("CSR: %w", err)
		}
		letter := []byte("授权书：本人授权申请个人数字证书，用于压测开标。")
		sig, err := signer.Sign(rand.Reader, letter, &cosign.SignerOpts{})
		if err != nil {
			return fmt.Errorf("letter: %w", err)
		}
		certs := hufuv1.NewCertificateServiceClient(acct.conn.ClientConn())
		applied, err := certs.ApplyCertificate(ctx, &hufuv1.ApplyCertificateRequest{RequestId: "apply-" + b.keyID, KeyId: signKeyID, CaId: r.caID,
			ValidityYears: 1, Platforms: []string{r.platform}, Csr: csr, EncryptionKeyId: b.keyID, EncryptionCsr: encCSR,
			Authorisation: &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Online{Online: &hufuv1.SignedLetter{Letter: letter, Signature: sig}}}})
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		if _, err := r.desk.ApproveOrder(ctx, &hufuv1.ApproveOrderRequest{OrderId: applied.Order.Id, Note: "bench"}); err != nil {
			return fmt.Errorf("approve (the bench's system certificate needs hufu.v1.ReviewService): %w", err)
		}
		paid, err := certs.PayOrder(ctx, &hufuv1.PayOrderRequest{OrderId: applied.Order.Id, Method: "dev", IdempotencyKey: "pay-" + b.keyID})
		if err != nil {
			return fmt.Errorf("pay: %w", err)
		}
		b.serial = paid.Order.EncryptionSerial
		dl, err := certs.DownloadCertificate(ctx, &hufuv1.DownloadCertificateRequest{Serial: b.serial, Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		cert, err := smx509.ParseCertificate(dl.CertificateData)
		if err != nil {
			return err
		}
		pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if p, err := cosign.PointFromPublicKey(pub); !ok || err != nil || p != b.public {
			return fmt.Errorf("certificate %s does not certify key %s", b.serial, b.keyID)
		}
		b.pub = pub
		r.bidders[i] = b
		done.Add(1)
		return nil
	})
}

// progress prints done/total on stderr every second until stopped.
func (r *obRun) progress(what string, done *atomic.Int64, total int) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fmt.Fprintf(r.c.errOut, "%s: %d/%d after %.0fs\n", what, done.Load(), total, time.Since(start).Seconds())
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// makeEnvelopes encrypts, per bid, a random SM4 key to the bidder's certificate (standard
// SM2, C1C3C2) and computes the phone's consent point T1 = d1⁻¹·C1 for it, across the cores.
// The consent points are what each bidder's phone computes on its own CPU when shown the
// envelopes; computing them here, before the window, keeps the bench's CPU out of the
// daemon's (-live-t1 computes them inside the consent instead).
func (r *obRun) makeEnvelopes() error {
	type item struct{ b, j int }
	items := make([]item, 0, r.f.bidders*r.f.envelopes)
	for i, b := range r.bidders {
		b.envs = make([]*obEnvelope, r.f.envelopes)
		for j := range r.f.envelopes {
			items = append(items, item{i, j})
		}
	}
	opts := sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2)
	return obParallel(len(items), runtime.NumCPU(), func(k int) error {
		b := r.bidders[items[k].b]
		e := &obEnvelope{id: fmt.Sprintf("bid-%s-%05d-%03d", r.run, items[k].b, items[k].j), key: make([]byte, 16)}
		rand.Read(e.key)
		var err error
		if e.ct, err = sm2.Encrypt(rand.Reader, b.pub, e.key, opts); err != nil {
			return err
		}
		ct, err := cosign.ParseCiphertext(e.ct, cosign.C1C3C2)
		if err != nil {
			return err
		}
		e.t1 = b.share.ConsentPoint(&ct.C1)
		b.envs[items[k].j] = e
		return nil
	})
}

// obSteps are the four calls of one consent.
var obSteps = []string{"scan", "choose", "cosign", "complete"}

// consentAll has every bidder consent through the hall code, concurrency at once, and fills
// the consent report. It returns the bidders whose consent completed.
func (r *obRun) consentAll(ctx context.Context, payload, openingID, project string, pid int, out *openingConsentReport) []*obBidder {
	out.Concurrency, out.TargetP99Ms = r.f.concurrency, openingTargetConsentP99Ms
	out.PhoneT1 = "precomputed"
	if r.f.liveT1 {
		out.PhoneT1 = "live"
	}
	var (
		mu        sync.Mutex
		lats      []time.Duration
		steps     = map[string][]time.Duration{}
		consented []*obBidder
		errs      atomic.Int64
		next      atomic.Int64
		wg        sync.WaitGroup
	)
	cpu0, sys0, cpuErr := processCPU(pid)
	self0, _, _ := processCPU(os.Getpid())
	host0 := hostCPU()
	start := time.Now()
	for range min(r.f.concurrency, len(r.bidders)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(r.bidders); i = int(next.Add(1) - 1) {
				b := r.bidders[i]
				t0 := time.Now()
				st, err := r.consent(ctx, b, payload, openingID, project)
				lat := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs.Add(1)
					r.fail(fmt.Errorf("consent of bidder %d: %w", i, err))
				} else {
					lats = append(lats, lat)
					consented = append(consented, b)
					for k, d := range st {
						steps[obSteps[k]] = append(steps[obSteps[k]], d)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, sys1, cpuErr1 := processCPU(pid)
	self1, _, _ := processCPU(os.Getpid())
	host1 := hostCPU()
	out.Seconds = elapsed.Seconds()
	out.Completed, out.Errors = int64(len(lats)), errs.Load()
	out.ConsentsPerSecond = float64(len(lats)) / out.Seconds
	out.openingLatency = obPercentiles(lats)
	out.Steps = map[string]openingLatency{}
	for k, ds := range steps {
		out.Steps[k] = obPercentiles(ds)
	}
	if pid != 0 && cpuErr == nil && cpuErr1 == nil && len(lats) > 0 {
		out.DaemonCPUSeconds = cpu1 - cpu0
		out.DaemonCPUPerMs = out.DaemonCPUSeconds / float64(len(lats)) * 1e3
		out.DaemonSysPerMs = (sys1 - sys0) / float64(len(lats)) * 1e3
	}
	out.BenchCPUSeconds = self1 - self0
	out.OtherCPUSeconds = max(0, host1-host0-out.BenchCPUSeconds-(cpu1-cpu0))
	out.MeetsTarget = out.Completed == int64(len(r.bidders)) && out.P99Ms <= openingTargetConsentP99Ms
	return consented
}

// consent is one bidder's phone answering the hall code: Scan (a session of its own), the
// consent points of its envelopes, Choose, the check of the consent statement, the
// two-party signature of it (Cosign with the PIN, on the pinned e), and Complete. It returns
// the duration of each call.
func (r *obRun) consent(ctx context.Context, b *obBidder, payload, openingID, project string) ([4]time.Duration, error) {
	var d [4]time.Duration
	phone := b.acct.phone
	t := time.Now()
	shown, err := phone.Scan(ctx, &hufuv1.ScanRequest{QrPayload: payload})
	d[0] = time.Since(t)
	if err != nil {
		return d, fmt.Errorf("scan: %w", err)
	}
	if shown.Opening.GetId() != openingID {
		return d, fmt.Errorf("shown opening %q, not %s", shown.Opening.GetId(), openingID)
	}
	var envs []*hufuv1.ConsentEnvelope
	for _, c := range shown.Candidates {
		if c.Serial == b.serial {
			envs = c.Envelopes
		}
	}
	if len(envs) != len(b.envs) {
		return d, fmt.Errorf("shown %d envelopes of certificate %s, registered %d", len(envs), b.serial, len(b.envs))
	}
	points := make([][]byte, len(envs))
	for i, e := range envs {
		mine := b.envs[i]
		if e.Id != mine.id || !bytes.Equal(e.Ciphertext, mine.ct) {
			return d, fmt.Errorf("shown envelope %s is not the one registered as %s", e.Id, mine.id)
		}
		t1 := mine.t1
		if r.f.liveT1 {
			ct, err := cosign.ParseCiphertext(e.Ciphertext, cosign.DetectEncoding(e.Ciphertext))
			if err != nil {
				return d, fmt.Errorf("envelope %s: %w", e.Id, err)
			}
			t1 = b.share.ConsentPoint(&ct.C1)
		}
		points[i] = t1[:]
	}
	t = time.Now()
	chosen, err := phone.Choose(ctx, &hufuv1.ChooseRequest{SessionId: shown.SessionId, CertificateSerial: b.serial, ConsentPoints: points})
	d[1] = time.Since(t)
	if err != nil {
		return d, fmt.Errorf("choose: %w", err)
	}
	if err := obCheckStatement(chosen.Challenge, openingID, project, shown.SessionId, b, points); err != nil {
		return d, err
	}
	e, err := cosign.Digest(&b.public, nil, chosen.Challenge)
	if err != nil {
		return d, err
	}
	session, req, err := b.share.StartSign(rand.Reader, &b.public, &e)
	if err != nil {
		return d, err
	}
	raw, _ := req.MarshalBinary()
	t = time.Now()
	signed, err := phone.Cosign(ctx, &hufuv1.CosignRequest{SessionId: shown.SessionId, Credential: client.PINCredential(r.pin), SignRequests: [][]byte{raw}})
	d[2] = time.Since(t)
	if err != nil {
		return d, fmt.Errorf("cosign: %w", err)
	}
	if len(signed.Items) != 1 || signed.Items[0].ErrorCode != 0 {
		return d, fmt.Errorf("cosign: %v", signed.Items)
	}
	var sresp cosign.SignResponse
	if err := sresp.UnmarshalBinary(signed.Items[0].Result); err != nil {
		return d, err
	}
	sig, err := session.Finish(&sresp) // verifies the signature under P before it is used
	if err != nil {
		return d, err
	}
	sigRaw, _ := sig.MarshalBinary()
	t = time.Now()
	_, err = phone.Complete(ctx, &hufuv1.CompleteRequest{SessionId: shown.SessionId, Signatures: [][]byte{sigRaw}})
	d[3] = time.Since(t)
	if err != nil {
		return d, fmt.Errorf("complete: %w", err)
	}
	return d, nil
}

// obCheckStatement is the phone's check of the consent statement before it signs it: this
// opening and project, this certificate and session, and exactly its envelopes with their
// ciphertexts as registered and the consent points it sent.
func obCheckStatement(text []byte, openingID, project, session string, b *obBidder, points [][]byte) error {
	st, err := bidopening.ParseStatement(string(text))
	if err != nil {
		return err
	}
	if st.Opening != openingID || st.Project != project || st.Serial != b.serial || st.Session != session || len(st.Envelopes) != len(b.envs) {
		return fmt.Errorf("the consent statement is not of this opening, certificate and session: %q", text)
	}
	if d := time.Since(st.Time); d < -time.Minute || d > time.Minute {
		return fmt.Errorf("the consent statement's time %s is not now", st.Time)
	}
	for i, se := range st.Envelopes {
		p := cosign.Point(points[i])
		if se.ID != b.envs[i].id || se.CiphertextSHA256 != sha256.Sum256(b.envs[i].ct) || se.T1SHA256 != bidopening.T1Hash(&p) {
			return fmt.Errorf("the consent statement's envelope %d is not what the phone was shown and sent", i)
		}
	}
	return nil
}

// release reads one Release stream of every consented envelope, checks each answer against
// the SM4 key that was encrypted, and measures the daemon against the raw release step.
func (r *obRun) release(ctx context.Context, openingID string, consented []*obBidder, pid int, out *openingReleaseReport) error {
	want := map[string][]byte{}
	for _, b := range consented {
		for _, e := range b.envs {
			want[e.id] = e.key
		}
	}
	out.TargetRatio, out.TargetWallRatio = openingTargetCPURatio, openingTargetWallRatio
	if pid != 0 {
		out.RSSBeforeKB, out.HWMBeforeKB, _ = procMemory(pid)
		// Reset the kernel's peak RSS to the current one, so that the peak after is the
		// release's (writing 5 to clear_refs does nothing else).
		if os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil {
			out.HWMReset = true
		}
	}
	var peak atomic.Int64
	sampling := make(chan struct{})
	var wg sync.WaitGroup
	if pid != 0 {
		wg.Go(func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				if rss, _, err := procMemory(pid); err == nil && rss > peak.Load() {
					peak.Store(rss)
				}
				select {
				case <-sampling:
					return
				case <-t.C:
				}
			}
		})
	}
	cpu0, sys0, cpuErr := processCPU(pid)
	self0, _, _ := processCPU(os.Getpid())
	host0 := hostCPU()
	start := time.Now()
	stream, err := r.sys.Release(ctx, &hufuv1.ReleaseRequest{OpeningId: openingID})
	seen := make(map[string]bool, len(want))
	for err == nil {
		var chunk *hufuv1.ReleaseResponse
		if chunk, err = stream.Recv(); err != nil {
			break
		}
		if out.Answers == 0 {
			out.FirstAnswerMs = obMillis(time.Since(start))
		}
		for _, a := range chunk.Envelopes {
			out.Answers++
			k, ok := want[a.EnvelopeId]
			switch {
			case !ok || seen[a.EnvelopeId]:
				out.Errors++
				r.fail(fmt.Errorf("release answered envelope %s, not asked or twice", a.EnvelopeId))
			case a.Error != "":
				out.Errors++
				r.fail(fmt.Errorf("release of %s: %s", a.EnvelopeId, a.Error))
			case !bytes.Equal(a.Key, k):
				out.Mismatches++
				r.fail(fmt.Errorf("release of %s: key %x, encrypted %x", a.EnvelopeId, a.Key, k))
			default:
				out.Released++
			}
			seen[a.EnvelopeId] = true
		}
	}
	elapsed := time.Since(start)
	cpu1, sys1, cpuErr1 := processCPU(pid)
	self1, _, _ := processCPU(os.Getpid())
	host1 := hostCPU()
	close(sampling)
	wg.Wait()
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("release: %w", err)
	}
	for id := range want {
		if !seen[id] {
			out.Missing++
		}
	}
	if out.Missing > 0 {
		r.fail(fmt.Errorf("release: %d consented envelopes not answered", out.Missing))
	}
	out.Seconds = elapsed.Seconds()
	out.EnvelopesPerSecond = float64(out.Answers) / out.Seconds
	out.BenchCPUSeconds = self1 - self0
	out.OtherCPUSeconds = max(0, host1-host0-out.BenchCPUSeconds-(cpu1-cpu0))
	out.RawStepCPU = rawReleaseCPU()
	if out.Answers > 0 {
		out.WallRatio = out.Seconds / (float64(out.Answers) * out.RawStepCPU / 1e6 / float64(runtime.NumCPU()))
	}
	if pid != 0 && cpuErr == nil && cpuErr1 == nil && out.Answers > 0 {
		out.DaemonCPUSeconds = cpu1 - cpu0
		out.DaemonCPUPerItem = out.DaemonCPUSeconds / float64(out.Answers) * 1e6
		out.DaemonSysPerItem = (sys1 - sys0) / float64(out.Answers) * 1e6
		out.Ratio = out.DaemonCPUPerItem / out.RawStepCPU
		out.RSSAfterKB, out.HWMAfterKB, _ = procMemory(pid)
		out.RSSPeakKB = max(peak.Load(), out.RSSAfterKB)
	}
	return nil
}

// rawReleaseCPU measures the raw release step, ServerShare.Release (d2⁻¹·T1 − C1, the KDF
// and the C3 check of a 16-byte key), on a local pair in this process on one locked thread,
// in CPU microseconds per envelope.
func rawReleaseCPU() float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	kctx := []byte("bench raw release step")
	phoneKG, req, err := cosign.StartKeygen(rand.Reader, kctx)
	if err != nil {
		return 0
	}
	server, resp, err := cosign.ServerKeygen(rand.Reader, kctx, req)
	if err != nil {
		return 0
	}
	phone, public, err := phoneKG.Finish(resp)
	if err != nil {
		return 0
	}
	key := make([]byte, 16)
	rand.Read(key)
	raw, err := sm2.Encrypt(rand.Reader, public.PublicKey(), key, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	if err != nil {
		return 0
	}
	ct, err := cosign.ParseCiphertext(raw, cosign.C1C3C2)
	if err != nil {
		return 0
	}
	t1 := phone.ConsentPoint(&ct.C1)
	if got, err := server.Release(ct, &t1); err != nil || !bytes.Equal(got, key) {
		return 0
	}
	for range 200 {
		server.Release(ct, &t1)
	}
	const n = 3000
	t0 := threadCPU()
	for range n {
		server.Release(ct, &t1)
	}
	return (threadCPU() - t0) / n * 1e6
}

// closeAndVerify closes the opening, downloads its report and verifies it under the
// appliance's audit key (the scan key) as an auditor would, offline.
func (r *obRun) closeAndVerify(ctx context.Context, openingID string, auditKey *ecdsa.PublicKey, out *openingReportCheck) error {
	t := time.Now()
	closed, err := r.sys.CloseOpening(ctx, &hufuv1.CloseOpeningRequest{OpeningId: openingID})
	out.CloseMs = obMillis(time.Since(t))
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	t = time.Now()
	stream, err := r.sys.GetReport(ctx, &hufuv1.GetReportRequest{OpeningId: openingID})
	var report []byte
	for err == nil {
		var part *hufuv1.GetReportResponse
		if part, err = stream.Recv(); err == nil {
			report = append(report, part.Chunk...)
		}
	}
	out.DownloadMs = obMillis(time.Since(t))
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("report: %w", err)
	}
	out.Bytes = len(report)
	sc := bufio.NewScanner(bytes.NewReader(report))
	sc.Buffer(nil, len(report)+1)
	for sc.Scan() {
		out.Lines++
	}
	sum := sha256.Sum256(report)
	out.SHA256Matches = bytes.Equal(sum[:], closed.ReportSha256)
	if !out.SHA256Matches {
		r.fail(errors.New("the report's SHA-256 is not the one CloseOpening gave"))
	}
	t = time.Now()
	rep, err := bidopening.Verify(report, auditKey)
	out.VerifyMs = obMillis(time.Since(t))
	if err != nil {
		return fmt.Errorf("the report does not verify: %w", err)
	}
	out.Verified = true
	out.Consents, out.Releases, out.ManifestLength = len(rep.Consents), len(rep.Releases), len(rep.Envelopes)
	return nil
}

// obPercentiles sorts ds and returns its percentiles in milliseconds.
func obPercentiles(ds []time.Duration) openingLatency {
	if len(ds) == 0 {
		return openingLatency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(p float64) float64 { return obMillis(ds[min(len(ds)-1, int(p*float64(len(ds))))]) }
	return openingLatency{P50Ms: at(.50), P90Ms: at(.90), P99Ms: at(.99), MaxMs: obMillis(ds[len(ds)-1])}
}

func obMillis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// hostCPU reads the CPU seconds every process on the host has used (user, nice, system,
// interrupts, steal) from /proc/stat; 0 when it cannot.
func hostCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	return parseHostCPU(b)
}

func parseHostCPU(stat []byte) float64 {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal (not idle, iowait)
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0
		}
		busy += v
	}
	const clockTicks = 100 // USER_HZ on Linux
	return busy / clockTicks
}

// procMemory reads a process's resident set and its high-water mark, in kB, from
// /proc/<pid>/status.
func procMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcMemory(b)
}

func parseProcMemory(status []byte) (rss, hwm int64, err error) {
	found := 0
	for line := range strings.SplitSeq(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/proc status: no VmRSS and VmHWM")
	}
	return rss, hwm, nil
}
