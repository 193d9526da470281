package ocsp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// indexCert is the certificate index daemon/certs claims every issued serial in; the
// tests claim it as certs does, so the source reads the real store.
const indexCert = "cert"

// fixture is a real embedded CA (SoftHSM2, Pebble) with three certificates: good, revoked
// and one never recorded in the index (unknown), and its responder over httptest.
type fixture struct {
	st                     *store.Store
	clock                  *clock
	ca                     *ca.Embedded
	good, revoked, unknown *smx509.Certificate
	handler                *ocsp.Handler
	srv                    *httptest.Server
	reg                    *prometheus.Registry
	revokedAt              time.Time
}

const validity = 4 * time.Hour

func newFixture(t testing.TB, cfg ocsp.Config) *fixture {
	t.Helper()
	return newFixtureAt(t, cfg, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
}

// newFixtureAt starts the fixture's clock at start (the revocation is an hour later).
func newFixtureAt(t testing.TB, cfg ocsp.Config, start time.Time) *fixture {
	t.Helper()
	ctx := context.Background()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(ctx, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kr.Close() })
	f := &fixture{clock: &clock{now: start.UTC().Truncate(time.Second)}, reg: prometheus.NewRegistry()}
	f.st, err = store.Open(ctx, store.Options{Dir: t.TempDir(), Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.st.Close(context.Background()) })
	if _, err := ca.Ensure(ctx, f.st, kr, "test-ca", "Test CA", f.clock.Now(), ca.Options{}); err != nil {
		t.Fatal(err)
	}
	if f.ca, err = ca.Open(ctx, f.st, kr, f.clock, "test-ca", "Test CA", ca.Options{CRLNextUpdate: validity, SubjectIdentity: ca.IdentityFull}); err != nil {
		t.Fatal(err)
	}
	f.good = f.issue(t, true)
	f.revoked = f.issue(t, true)
	f.unknown = f.issue(t, false)
	f.clock.Advance(time.Hour)
	if err := f.ca.Revoke(ctx, serialHex(f.revoked), ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	f.revokedAt = f.clock.Now()

	cfg.CAID, cfg.Issuer, cfg.Clock = "test-ca", f.ca.Issuing(), f.clock
	cfg.Source = f.ca.OCSPSource(func(ctx context.Context, serial string) (bool, error) {
		_, err := f.st.Lookup(ctx, indexCert, serial)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if cfg.Signer == nil {
		cfg.Signer = f.ca
	}
	cfg.Validity = validity
	cfg.IncludeIssuer = true
	cfg.Metrics = ocsp.NewMetrics(f.reg)
	if f.handler, err = ocsp.NewHandler(cfg); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.handler)
	t.Cleanup(f.srv.Close)
	return f
}

// issue has the CA sign a certificate and, if recorded, claims its serial in the index.
func (f *fixture) issue(t testing.TB, recorded bool) *smx509.Certificate {
	t.Helper()
	ctx := context.Background()
	holder, _ := sm2.GenerateKey(rand.Reader)
	issued, err := f.ca.Fetch(ctx, "o", &ca.Application{OrderID: "o", Name: "张三", IDNumberMask: "110105********002X",
		IDNumber: "11010519491231002X", Usage: ca.UsageSigning,
		PublicKey: &holder.PublicKey, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	if recorded {
		if err := f.st.Update(ctx, func(tx *store.Tx) error {
			if err := tx.Claim(indexCert, issued.Serial, "c/cert/u1/"+issued.Serial); err != nil {
				return err
			}
			return tx.Audit(store.Event{Actor: "test", Action: "cert.issue", Subject: "c/cert/u1/" + issued.Serial, Outcome: store.OutcomeOK})
		}); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := smx509.ParseCertificate(issued.DER)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func serialHex(c *smx509.Certificate) string { return strings.ToLower(c.SerialNumber.Text(16)) }

func (f *fixture) request(t testing.TB, hash ocsp.HashAlgorithm, nonce []byte, certs ...*smx509.Certificate) []byte {
	t.Helper()
	var ids []ocsp.CertID
	for _, c := range certs {
		id, err := ocsp.NewCertID(hash, f.ca.Issuing(), c.SerialNumber)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	der, err := ocsp.MarshalRequest(ids, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fixture) post(t *testing.T, body []byte) []byte {
	t.Helper()
	resp, err := http.Post(f.srv.URL+"/", "application/ocsp-request", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("HTTP %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return der
}

func (f *fixture) parse(t *testing.T, der []byte) *ocsp.Response {
	t.Helper()
	r, err := ocsp.ParseResponse(der, f.ca.Issuing())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResponderAnswers(t *testing.T) {
	f := newFixture(t, ocsp.Config{})
	nonce := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name  string
		cert  *smx509.Certificate
		hash  ocsp.HashAlgorithm
		nonce []byte
		want  ocsp.Status
	}{
		{"good sha1", f.good, ocsp.SHA1, nil, ocsp.Status{Status: ocsp.Good}},
		{"good sm3 nonce", f.good, ocsp.SM3, nonce, ocsp.Status{Status: ocsp.Good}},
		{"revoked sha256", f.revoked, ocsp.SHA256, nil, ocsp.Status{Status: ocsp.Revoked, RevokedAt: f.revokedAt, Reason: ca.ReasonKeyCompromise}},
		{"revoked sha1 nonce", f.revoked, ocsp.SHA1, nonce, ocsp.Status{Status: ocsp.Revoked, RevokedAt: f.revokedAt, Reason: ca.ReasonKeyCompromise}},
		{"never issued", f.unknown, ocsp.SHA1, nil, ocsp.Status{Status: ocsp.Unknown}},
		{"never issued nonce", f.unknown, ocsp.SM3, nonce, ocsp.Status{Status: ocsp.Unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.parse(t, f.post(t, f.request(t, tc.hash, tc.nonce, tc.cert)))
			if r.Status != ocsp.Successful || len(r.Singles) != 1 {
				t.Fatalf("status %v, %d answers", r.Status, len(r.Singles))
			}
			s := r.Singles[0]
			if s.CertID.Serial.Cmp(tc.cert.SerialNumber) != 0 || s.CertID.Hash != tc.hash {
				t.Fatalf("answer for %v/%v", s.CertID.Serial, s.CertID.Hash)
			}
			if s.Status.Status != tc.want.Status || !s.Status.RevokedAt.Equal(tc.want.RevokedAt) || s.Status.Reason != tc.want.Reason {
				t.Fatalf("status %+v, want %+v", s.Status, tc.want)
			}
			if !s.ThisUpdate.Equal(f.clock.Now()) || !s.NextUpdate.Equal(f.clock.Now().Add(validity)) {
				t.Fatalf("thisUpdate %v nextUpdate %v", s.ThisUpdate, s.NextUpdate)
			}
			var wantNonce []byte
			if tc.nonce != nil {
				wantNonce = append([]byte{0x04, byte(len(tc.nonce))}, tc.nonce...)
			}
			if !bytes.Equal(r.Nonce, wantNonce) {
				t.Fatalf("nonce %x, want %x", r.Nonce, wantNonce)
			}
			if len(r.Certs) != 1 || !r.Certs[0].Equal(f.ca.Issuing()) {
				t.Fatal("the issuing CA's certificate is not in certs")
			}
		})
	}

	t.Run("several certificates", func(t *testing.T) {
		r := f.parse(t, f.post(t, f.request(t, ocsp.SHA1, nil, f.good, f.revoked, f.unknown)))
		if len(r.Singles) != 3 || r.Singles[0].Status.Status != ocsp.Good || r.Singles[1].Status.Status != ocsp.Revoked ||
			r.Singles[2].Status.Status != ocsp.Unknown {
			t.Fatalf("%+v", r.Singles)
		}
	})

	t.Run("GET", func(t *testing.T) {
		req := f.request(t, ocsp.SHA1, nil, f.revoked)
		for _, path := range []string{
			url.PathEscape(base64.StdEncoding.EncodeToString(req)),
			base64.RawURLEncoding.EncodeToString(req),
		} {
			resp, err := http.Get(f.srv.URL + "/" + path)
			if err != nil {
				t.Fatal(err)
			}
			der, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if r := f.parse(t, der); r.Status != ocsp.Successful || r.Singles[0].Status.Status != ocsp.Revoked {
				t.Fatalf("GET %s: %+v", path, r)
			}
		}
	})

	t.Run("through a mux", func(t *testing.T) {
		// Mounted as the PKI listener mounts it (one pattern for all CAs, ByCA picks the
		// responder), and under a prefix; standard base64 has '/' and '+', which a client
		// URL-escapes (RFC 6960 appendix A), or escapes only where it must.
		mux := http.NewServeMux()
		byCA := ocsp.ByCA{"test-ca": f.handler}
		mux.Handle("POST /ocsp/{ca}", byCA)
		mux.Handle("GET /ocsp/{ca}/{request...}", byCA)
		mux.Handle("/prefixed/", http.StripPrefix("/prefixed", f.handler))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		resp, err := http.Post(srv.URL+"/ocsp/test-ca", "application/ocsp-request", bytes.NewReader(f.request(t, ocsp.SHA1, nil, f.revoked)))
		if err != nil {
			t.Fatal(err)
		}
		der, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if r := f.parse(t, der); r.Status != ocsp.Successful || r.Singles[0].Status.Status != ocsp.Revoked {
			t.Fatalf("POST through ByCA: %+v", r)
		}
		resp, err = http.Post(srv.URL+"/ocsp/other-ca", "application/ocsp-request", bytes.NewReader(f.request(t, ocsp.SHA1, nil, f.revoked)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("a CA without a responder: HTTP %d", resp.StatusCode)
		}
		var req []byte
		for i := 0; req == nil; i++ {
			if i == 1<<16 {
				t.Fatal("no request whose base64 has // and +")
			}
			// Six 0xff octets are "////" in base64 at any alignment.
			r := f.request(t, ocsp.SHA1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, byte(i), byte(i >> 8)}, f.good)
			if b := base64.StdEncoding.EncodeToString(r); strings.Contains(b, "//") && strings.Contains(b, "+") {
				req = r
			}
		}
		for _, path := range []string{
			"/ocsp/test-ca/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)),
			"/ocsp/test-ca/" + strings.ReplaceAll(base64.StdEncoding.EncodeToString(req), "//", "/%2F"),
			"/ocsp/test-ca/" + base64.RawURLEncoding.EncodeToString(req),
			"/prefixed/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)),
			"/prefixed/" + strings.ReplaceAll(base64.StdEncoding.EncodeToString(req), "//", "/%2F"),
		} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			der, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
			}
			if r := f.parse(t, der); r.Status != ocsp.Successful || r.Singles[0].Status.Status != ocsp.Good {
				t.Fatalf("GET %s: %+v", path, r)
			}
		}
	})

	t.Run("signature by gmsm", func(t *testing.T) {
		// Independently of ParseResponse: the tbsResponseData is signed with the default ID.
		der := f.post(t, f.request(t, ocsp.SHA1, nil, f.good))
		tbs, sig := splitBasicResponse(t, der)
		pub := f.ca.Issuing().PublicKey.(*ecdsa.PublicKey)
		if !sm2.VerifyASN1WithSM2(pub, nil, tbs, sig) {
			t.Fatal("gmsm does not verify the response signature with the default ID")
		}
		tbs[len(tbs)-1] ^= 1
		if sm2.VerifyASN1WithSM2(pub, nil, tbs, sig) {
			t.Fatal("an altered response verifies")
		}
	})
}

func TestResponderRefusals(t *testing.T) {
	f := newFixture(t, ocsp.Config{})
	good := f.request(t, ocsp.SHA1, nil, f.good)

	other := newFixture(t, ocsp.Config{})
	otherIssuer := other.request(t, ocsp.SHA1, nil, other.good)
	mixed, _ := ocsp.MarshalRequest(append(certIDs(t, f, f.good), certIDs(t, other, other.good)...), nil)

	for _, tc := range []struct {
		name string
		body []byte
		want ocsp.ResponseStatus
	}{
		{"empty", nil, ocsp.MalformedRequest},
		{"garbage", []byte("hello"), ocsp.MalformedRequest},
		{"trailing bytes", append(bytes.Clone(good), 0), ocsp.MalformedRequest},
		{"truncated", good[:len(good)-1], ocsp.MalformedRequest},
		{"oversized", bytes.Repeat([]byte{0x30}, ocsp.MaxRequestBytes+1), ocsp.MalformedRequest},
		{"another issuer", otherIssuer, ocsp.Unauthorized},
		{"one of another issuer", mixed, ocsp.Unauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.parse(t, f.post(t, tc.body))
			if r.Status != tc.want || r.Singles != nil {
				t.Fatalf("status %v, want %v", r.Status, tc.want)
			}
		})
	}
	before := f.counter(t, "hufu_ocsp_responses_total", "malformed")
	if before != 5 {
		t.Fatalf("malformed responses counted %v, want 5", before)
	}

	t.Run("HTTP", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, contentType string
			want                      int
		}{
			{http.MethodPut, "/", "application/ocsp-request", http.StatusMethodNotAllowed},
			{http.MethodPost, "/", "text/plain", http.StatusUnsupportedMediaType},
			{http.MethodGet, "/not-base64!", "", http.StatusOK},
		} {
			req, _ := http.NewRequest(tc.method, f.srv.URL+tc.path, bytes.NewReader(good))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			der, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: HTTP %d, want %d", tc.method, tc.contentType, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK {
				if r := f.parse(t, der); r.Status != ocsp.MalformedRequest {
					t.Fatalf("GET of a bad path: %v", r.Status)
				}
			}
		}
	})
}

func certIDs(t *testing.T, f *fixture, certs ...*smx509.Certificate) []ocsp.CertID {
	t.Helper()
	var ids []ocsp.CertID
	for _, c := range certs {
		id, err := ocsp.NewCertID(ocsp.SHA1, f.ca.Issuing(), c.SerialNumber)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// counter reads a counter from the fixture's registry: the sum of the samples whose
// status label is status (any, if status is "").
func (f *fixture) counter(t *testing.T, name, status string) float64 {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			match := status == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "serial" {
					t.Fatal("a serial in a metric label")
				}
				if l.GetName() == "status" && l.GetValue() == status {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// splitBasicResponse takes the signed bytes and the signature out of a successful
// response with encoding/asn1 alone.
func splitBasicResponse(t *testing.T, der []byte) (tbs, sig []byte) {
	t.Helper()
	var resp struct {
		Status asn1.Enumerated
		Bytes  struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &resp); err != nil {
		t.Fatal(err)
	}
	var basic struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
		Certs     asn1.RawValue `asn1:"optional,explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(resp.Bytes.Response, &basic); err != nil {
		t.Fatal(err)
	}
	if !basic.Algorithm.Algorithm.Equal(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}) || len(basic.Algorithm.Parameters.FullBytes) != 0 {
		t.Fatalf("signature algorithm %v", basic.Algorithm)
	}
	return basic.TBS.FullBytes, basic.Signature.RightAlign()
}

func TestResponderCache(t *testing.T) {
	f := newFixture(t, ocsp.Config{})
	ctx := context.Background()
	req := f.request(t, ocsp.SHA1, nil, f.good)
	first := f.post(t, req)
	f.clock.Advance(validity/2 - time.Second)
	if again := f.post(t, req); !bytes.Equal(first, again) {
		t.Fatal("a response without a nonce was signed again within half its validity")
	}
	if hits := f.counter(t, "hufu_ocsp_cache_hits_total", ""); hits != 1 {
		t.Fatalf("cache hits %v, want 1", hits)
	}
	// A nonced request is always signed fresh.
	n1 := f.post(t, f.request(t, ocsp.SHA1, []byte{1}, f.good))
	n2 := f.post(t, f.request(t, ocsp.SHA1, []byte{1}, f.good))
	if bytes.Equal(n1, n2) {
		t.Fatal("a nonced response was reused")
	}

	// A revocation shows in the next answer, although the cached one is still fresh.
	if err := f.ca.Revoke(ctx, serialHex(f.good), ca.ReasonCessation); err != nil {
		t.Fatal(err)
	}
	r := f.parse(t, f.post(t, req))
	if s := r.Singles[0].Status; s.Status != ocsp.Revoked || s.Reason != ca.ReasonCessation || !s.RevokedAt.Equal(f.clock.Now()) {
		t.Fatalf("after revocation: %+v", s)
	}
	revoked := f.post(t, req)
	f.clock.Advance(time.Second) // now half the validity of the first has passed
	if !bytes.Equal(revoked, f.post(t, req)) {
		t.Fatal("the revoked answer was not cached")
	}
	// Past half its validity an answer is signed again.
	f.clock.Advance(validity / 2)
	renewed := f.parse(t, f.post(t, req))
	if bytes.Equal(revoked, f.post(t, req)) || !renewed.Singles[0].ThisUpdate.Equal(f.clock.Now()) {
		t.Fatalf("stale answer served: thisUpdate %v", renewed.Singles[0].ThisUpdate)
	}
}

// blockingSigner is a fault-injecting fake: it holds a signing slot until released, which
// the real HSM does not do on demand.
type blockingSigner struct {
	real    ocsp.Signer
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSigner) SignOCSP(ctx context.Context, tbs []byte) ([]byte, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.real.SignOCSP(ctx, tbs)
}

func TestResponderBoundsSigning(t *testing.T) {
	signer := &blockingSigner{entered: make(chan struct{}, 1), release: make(chan struct{})}
	f := newFixture(t, ocsp.Config{Signer: signer, MaxSigning: 1, SigningWait: 50 * time.Millisecond})
	signer.real = f.ca
	done := make(chan []byte)
	first := f.request(t, ocsp.SHA1, []byte{1}, f.good)
	go func() { done <- f.handler.Respond(context.Background(), first) }()
	<-signer.entered
	// The one slot is taken: a second nonced request is turned away, not queued.
	if r := f.parse(t, f.post(t, f.request(t, ocsp.SHA1, []byte{2}, f.good))); r.Status != ocsp.TryLater {
		t.Fatalf("with signing saturated: %v", r.Status)
	}
	close(signer.release)
	if r := f.parse(t, <-done); r.Status != ocsp.Successful {
		t.Fatalf("the signing request: %v", r.Status)
	}
	if n := f.counter(t, "hufu_ocsp_responses_total", "try_later"); n != 1 {
		t.Fatalf("try_later counted %v", n)
	}
}

func TestResponderStoreFailure(t *testing.T) {
	f := newFixture(t, ocsp.Config{})
	if err := f.st.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := f.parse(t, f.post(t, f.request(t, ocsp.SHA1, nil, f.good))); r.Status != ocsp.InternalError {
		t.Fatalf("with the store closed: %v", r.Status)
	}
}

func TestResponderCacheBound(t *testing.T) {
	f := newFixture(t, ocsp.Config{CacheEntries: 2})
	reqs := [][]byte{f.request(t, ocsp.SHA1, nil, f.good), f.request(t, ocsp.SHA1, nil, f.revoked), f.request(t, ocsp.SHA1, nil, f.unknown)}
	for _, r := range reqs {
		f.post(t, r)
	}
	for _, r := range reqs {
		f.post(t, r)
	}
	// Three answers, room for two: the second round finds at most two in the cache (an
	// unbounded cache would serve all three).
	if hits := f.counter(t, "hufu_ocsp_cache_hits_total", ""); hits > 2 {
		t.Fatalf("cache hits %v with room for 2 answers", hits)
	}
}
