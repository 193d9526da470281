package daemon_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// jsonAPI is a system or a person calling the JSON gateway over real HTTPS, as a Java
// system would: JSON bodies, the client certificate on the TLS connection, and nothing
// from the gRPC stubs.
type jsonAPI struct {
	t    *testing.T
	base string
	http *http.Client
}

// jsonClient connects to a's JSON gateway trusting the development CA, presenting the
// client certificate in certFile/keyFile (none if certFile is ""), over HTTP/2 if h2.
func jsonClient(t *testing.T, a *appliance, certFile, keyFile string, h2 bool) *jsonAPI {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &jsonAPI{t: t, base: a.live.JSONURL(), http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

// systemJSON is the development CLI's certificate: the system client the tests configure.
func systemJSON(t *testing.T, a *appliance) *jsonAPI {
	dir := filepath.Join(a.cfg.DataDir, "tls")
	return jsonClient(t, a, filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli-key.pem"), false)
}

// do sends a request (body marshalled as JSON unless nil) and returns the status code, the
// response and its body decoded into a generic map (nil if not a JSON object).
func (j *jsonAPI) do(method, path string, body any, header ...string) (int, *http.Response, map[string]any) {
	j.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			j.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, j.base+path, rd)
	if err != nil {
		j.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := j.http.Do(req)
	if err != nil {
		j.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		j.t.Fatal(err)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, resp, out
}

// ok is do that fails the test unless the answer is 200.
func (j *jsonAPI) ok(method, path string, body any, header ...string) map[string]any {
	j.t.Helper()
	code, _, out := j.do(method, path, body, header...)
	if code != http.StatusOK {
		j.t.Fatalf("%s %s: HTTP %d %v", method, path, code, out)
	}
	return out
}

// stream opens a server-streaming call (GET, or POST with body if body is not nil) and
// returns its lines, decoded, on a channel that closes at the end of the stream.
func (j *jsonAPI) stream(path string, body any) (<-chan map[string]any, *http.Response) {
	j.t.Helper()
	method, rd := "GET", io.Reader(nil)
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			j.t.Fatal(err)
		}
		method, rd = "POST", bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, j.base+path, rd)
	if err != nil {
		j.t.Fatal(err)
	}
	resp, err := j.http.Do(req)
	if err != nil {
		j.t.Fatal(err)
	}
	lines := make(chan map[string]any, 16)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"undecodable": sc.Text()}
			}
			lines <- m
		}
	}()
	return lines, resp
}

// field walks a decoded JSON object along keys ("session", "state").
func field(m any, keys ...string) any {
	for _, k := range keys {
		o, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = o[k]
	}
	return m
}

func str(m any, keys ...string) string { s, _ := field(m, keys...).(string); return s }

// wantViolation fails unless a JSON error body is a google.rpc.Status of code with a
// BadRequest field violation naming field.
func wantViolation(t *testing.T, httpCode int, body map[string]any, wantHTTP int, field string) {
	t.Helper()
	if httpCode != wantHTTP {
		t.Fatalf("HTTP %d, want %d: %v", httpCode, wantHTTP, body)
	}
	details, _ := body["details"].([]any)
	for _, d := range details {
		if str(d, "@type") != "type.googleapis.com/google.rpc.BadRequest" {
			continue
		}
		for _, v := range field0(d) {
			if str(v, "field") == field {
				return
			}
		}
	}
	t.Fatalf("no field violation naming %q in %v", field, body)
}

func field0(d any) []any { v, _ := field(d, "field_violations").([]any); return v }

// TestJSONScanSession drives scan sessions as a business system through the JSON gateway
// only (HTTP/1.1, client certificate), while the phone answers through its gRPC client: a
// BIND watched as newline-delimited JSON, the binding resolved, a LOGIN, a bad request whose
// 400 names the field, the OpenAPI document and an unknown path.
func TestJSONScanSession(t *testing.T) {
	a := scanAppliance(t)
	p := newApplicant(t, a, phone, "json-scan-01", "key-json-0001")
	serial := p.issue(a.desk())
	phoneScan := hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn())
	sys := systemJSON(t, a.appliance)

	// Bad input: 400 with the field violation apierr produced, as gRPC would report it.
	code, _, body := sys.do("POST", "/v1/scan/sessions", map[string]any{"request_id": "json-bad-1", "kind": "SESSION_KIND_BIND",
		"platform_id": "demo", "reference": "unit-42", "subject": map[string]any{"person_name": "张三", "id_number": "110105194912310021"}})
	wantViolation(t, code, body, http.StatusBadRequest, "subject.id_number")
	if body["code"] != float64(3) || !strings.HasPrefix(str(body, "message"), "subject.id_number") {
		t.Fatalf("error body: %v", body)
	}

	// A body that is not JSON of the request message is refused before any call.
	code, _, body = sys.do("POST", "/v1/scan/sessions", map[string]any{"request_id": 42})
	if code != http.StatusBadRequest || body["code"] != float64(3) {
		t.Fatalf("undecodable body: HTTP %d %v", code, body)
	}

	// BIND, followed by a watch stream while the phone answers.
	code, resp, created := sys.do("POST", "/v1/scan/sessions", map[string]any{"request_id": "json-bind-1", "kind": "SESSION_KIND_BIND",
		"platform_id": "demo", "reference": "unit-42", "subject": map[string]any{"person_name": "张三", "id_number": "11010519491231002X"}})
	if code != http.StatusOK {
		t.Fatalf("create: HTTP %d %v", code, created)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id in the answer")
	}
	id, payload := str(created, "session", "id"), str(created, "session", "qr_payload")
	if id == "" || payload == "" || str(created, "session", "state") != "SESSION_STATE_CREATED" {
		t.Fatalf("created: %v", created)
	}
	lines, wresp := sys.stream("/v1/scan/sessions/"+id+"/watch", nil)
	if wresp.StatusCode != http.StatusOK {
		t.Fatalf("watch: HTTP %d", wresp.StatusCode)
	}
	first := <-lines
	if str(first, "result", "session", "state") != "SESSION_STATE_CREATED" {
		t.Fatalf("first watched line: %v", first)
	}
	if err := answerLogin(phoneScan, p.key, serial, id, payload); err != nil {
		t.Fatalf("phone: %v", err)
	}
	var states []string
	for l := range lines {
		if l["error"] != nil || l["undecodable"] != nil {
			t.Fatalf("watch line: %v", l)
		}
		states = append(states, str(l, "result", "session", "state"))
	}
	if len(states) == 0 || states[len(states)-1] != "SESSION_STATE_COMPLETED" {
		t.Fatalf("watched states: %v", states)
	}
	got := sys.ok("GET", "/v1/scan/sessions/"+id, nil)
	if str(got, "session", "state") != "SESSION_STATE_COMPLETED" || str(got, "session", "result", "binding", "reference") != "unit-42" {
		t.Fatalf("session: %v", got)
	}
	resolved := sys.ok("GET", "/v1/scan/certificates/"+serial+"/binding", nil)
	if str(resolved, "binding", "reference") != "unit-42" || str(resolved, "binding", "certificate_serial") != serial {
		t.Fatalf("resolve: %v", resolved)
	}
	bindings := sys.ok("GET", "/v1/scan/bindings?reference=unit-42", nil)
	if list, _ := bindings["bindings"].([]any); len(list) != 1 {
		t.Fatalf("bindings: %v", bindings)
	}

	// LOGIN with the binding: the result names the reference.
	login := sys.ok("POST", "/v1/scan/sessions", map[string]any{"request_id": "json-login-1", "kind": "SESSION_KIND_LOGIN", "platform_id": "demo"})
	if err := answerLogin(phoneScan, p.key, serial, str(login, "session", "id"), str(login, "session", "qr_payload")); err != nil {
		t.Fatalf("phone: %v", err)
	}
	got = sys.ok("GET", "/v1/scan/sessions/"+str(login, "session", "id"), nil)
	if str(got, "session", "state") != "SESSION_STATE_COMPLETED" || str(got, "session", "result", "binding", "reference") != "unit-42" {
		t.Fatalf("login: %v", got)
	}

	// Another system's view: NotFound is 404, like an unknown path.
	if code, _, _ := sys.do("GET", "/v1/scan/sessions/nonexistent", nil); code != http.StatusNotFound {
		t.Fatalf("unknown session: HTTP %d", code)
	}
	if code, _, _ := sys.do("GET", "/v1/no/such/path", nil); code != http.StatusNotFound {
		t.Fatalf("unknown path: HTTP %d", code)
	}

	// The OpenAPI document served is the committed one.
	checkOpenAPIServed(t, sys)
}

// checkOpenAPIServed compares /openapi.json with api/openapi/hufu.swagger.json on disk.
func checkOpenAPIServed(t *testing.T, j *jsonAPI) {
	t.Helper()
	resp, err := j.http.Get(j.base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi: HTTP %d %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	committed, err := os.ReadFile(filepath.Join("..", "api", "openapi", "hufu.swagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served, committed) {
		t.Fatalf("served OpenAPI document (%d bytes) differs from the committed one (%d bytes)", len(served), len(committed))
	}
}

// TestJSONIdentity: a JSON caller is who its TLS connection proves, whatever its headers
// say. Without a certificate, or with another system's, headers naming the configured
// system client change nothing; a person's bearer token works with its device header only.
func TestJSONIdentity(t *testing.T) {
	a := scanAppliance(t)
	spoofed := []string{"X-Ssl-Client-S-Dn", "CN=" + devpki.CLIClientName, "X-Forwarded-Client-Cert", "Subject=\"CN=" + devpki.CLIClientName + "\"",
		"Grpc-Metadata-Hufu-System", devpki.CLIClientName, "Grpc-Metadata-Authorization", "Bearer x", "X-Forwarded-For", "10.0.0.1"}
	createBody := map[string]any{"request_id": "spoof-0001", "kind": "SESSION_KIND_LOGIN", "platform_id": "demo"}

	anonymous := jsonClient(t, a.appliance, "", "", true)
	code, _, body := anonymous.do("POST", "/v1/scan/sessions", createBody, spoofed...)
	if code != http.StatusUnauthorized || !strings.Contains(str(body, "message"), "client certificate") {
		t.Fatalf("no certificate, spoofed headers: HTTP %d %v", code, body)
	}

	// A certificate of the same CA for a system with no permissions.
	dir := t.TempDir()
	ca, caKey, err := devpki.LoadCA(devpki.FilesIn(filepath.Join(a.cfg.DataDir, "tls")))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "other.pem"), filepath.Join(dir, "other-key.pem")
	if _, _, err := devpki.IssueClient(certFile, keyFile, "other-system", ca, caKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	other := jsonClient(t, a.appliance, certFile, keyFile, true)
	code, _, body = other.do("POST", "/v1/scan/sessions", createBody, spoofed...)
	if code != http.StatusForbidden || !strings.Contains(str(body, "message"), `"other-system"`) {
		t.Fatalf("other system, spoofed headers: HTTP %d %v", code, body)
	}

	// The configured system over HTTP/2 is allowed.
	sys := jsonClient(t, a.appliance, filepath.Join(a.cfg.DataDir, "tls", "cli.pem"), filepath.Join(a.cfg.DataDir, "tls", "cli-key.pem"), true)
	_, resp, created := sys.do("POST", "/v1/scan/sessions", createBody)
	if resp.ProtoMajor != 2 || str(created, "session", "state") != "SESSION_STATE_CREATED" {
		t.Fatalf("system over %s: %v", resp.Proto, created)
	}

	// A person signs in and calls with the bearer token, all in JSON.
	const number, device = "13800138777", "json-phone-01"
	anonymous.ok("POST", "/v1/account/send-sms-code", map[string]any{"phone": number, "purpose": "SMS_PURPOSE_SIGN_IN"})
	signedIn := anonymous.ok("POST", "/v1/account/sign-in-with-sms-code", map[string]any{"phone": number,
		"code": a.code(number, accounts.PurposeSignIn), "device": map[string]any{"id": device, "name": "JSON"}})
	token := str(signedIn, "session", "access_token")
	if token == "" {
		t.Fatalf("sign-in: %v", signedIn)
	}
	me := anonymous.ok("GET", "/v1/account/get-account", nil, "Authorization", "Bearer "+token, "Hufu-Device-Id", device)
	if str(me, "account", "id") != str(signedIn, "account", "id") || str(me, "account", "id") == "" {
		t.Fatalf("account: %v (signed in %v)", me, signedIn)
	}
	// The token is bound to its device; and it does not make the person a system.
	if code, _, _ := anonymous.do("GET", "/v1/account/get-account", nil, "Authorization", "Bearer "+token, "Hufu-Device-Id", "another-device"); code != http.StatusUnauthorized {
		t.Fatalf("token from another device: HTTP %d", code)
	}
	if code, _, _ := anonymous.do("GET", "/v1/account/get-account", nil); code != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d", code)
	}
	if code, _, _ := anonymous.do("POST", "/v1/scan/sessions", createBody, "Authorization", "Bearer "+token, "Hufu-Device-Id", device); code != http.StatusUnauthorized {
		t.Fatalf("person on a system method: HTTP %d", code)
	}
}

// TestJSONBidOpening runs an opening as a bid-opening system through the JSON gateway only:
// create, register envelopes, seal, a DECRYPT code the bidder answers on the phone (gRPC),
// the release as newline-delimited JSON whose keys open under the system's key, close, and
// the signed report streamed in base64 chunks that verifies under the appliance's key.
func TestJSONBidOpening(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName,
			Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.OpeningService"}}}
	})
	p := newApplicant(t, a, "13800138091", "json-bid-01", "json-bid-key-01")
	serial, encKey := p.issueForEnvelopes(a.desk()) // bids are enveloped to the encryption certificate
	cert, _, _, _ := p.download(serial)
	key := *encKey
	key.cred = client.PINCredential("123456") // the clock moves past any ticket's life
	b := &bidder{name: "json", phone: hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn()), key: &key, serial: serial,
		pub: cert.PublicKey.(*ecdsa.PublicKey), conn: p.conn}
	sys := systemJSON(t, a.appliance)

	resultKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := a.clock.Now()
	create := map[string]any{"request_id": "json-open-0001", "project_code": "FZ-2026-119", "project_name": "示范桥梁工程",
		"platform_id": "demo", "window_start": now.Add(time.Hour).Format(time.RFC3339), "window_end": now.Add(3 * time.Hour).Format(time.RFC3339),
		"result_public_key": base64.StdEncoding.EncodeToString(elliptic(resultKey))}
	bad := maps.Clone(create)
	bad["request_id"], bad["window_end"] = "json-open-bad1", create["window_start"]
	code, _, body := sys.do("POST", "/v1/openings", bad)
	wantViolation(t, code, body, http.StatusBadRequest, "window_end")
	o := str(sys.ok("POST", "/v1/openings", create), "opening", "id")
	if o == "" {
		t.Fatal("no opening id")
	}

	keys := map[string][]byte{}
	var regs []any
	for _, id := range []string{"bid-j-1", "bid-j-2"} {
		sm4 := make([]byte, 16)
		rand.Read(sm4)
		ct, err := sm2.Encrypt(rand.Reader, b.pub, sm4, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = sm4
		regs = append(regs, map[string]any{"envelope_id": id, "certificate_serial": serial, "ciphertext": base64.StdEncoding.EncodeToString(ct)})
	}
	if r := sys.ok("POST", "/v1/openings/"+o+"/envelopes", map[string]any{"envelopes": regs}); r["envelopes"] != float64(2) {
		t.Fatalf("register: %v", r)
	}
	// Before the window the release is refused: the stream's one line is a FailedPrecondition.
	lines, resp := sys.stream("/v1/openings/"+o+"/release", map[string]any{})
	early := 0
	for l := range lines {
		if field(l, "error", "code") != float64(9) {
			t.Fatalf("early release: HTTP %d %v", resp.StatusCode, l)
		}
		early++
	}
	if early != 1 {
		t.Fatalf("early release: %d error lines, want 1", early)
	}
	if s := sys.ok("POST", "/v1/openings/"+o+"/seal", map[string]any{}); str(s, "opening", "state") != "OPENING_STATE_SEALED" {
		t.Fatalf("seal: %v", s)
	}

	a.clock.Advance(time.Hour + time.Minute)
	decrypt := sys.ok("POST", "/v1/scan/sessions", map[string]any{"request_id": "json-decrypt-1", "kind": "SESSION_KIND_DECRYPT", "opening_id": o})
	if err := b.consent(t, str(decrypt, "session", "qr_payload"), false); err != nil {
		t.Fatalf("consent: %v", err)
	}
	lines, resp = sys.stream("/v1/openings/"+o+"/release", map[string]any{})
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.Join(resp.TransferEncoding, ","), "chunked") {
		t.Fatalf("release: HTTP %d, transfer encoding %v", resp.StatusCode, resp.TransferEncoding)
	}
	released := 0
	for l := range lines {
		envs, _ := field(l, "result", "envelopes").([]any)
		if len(envs) == 0 {
			t.Fatalf("release line: %v", l)
		}
		for _, e := range envs {
			enc, err := base64.StdEncoding.DecodeString(str(e, "encrypted_key"))
			if err != nil || str(e, "error") != "" {
				t.Fatalf("released envelope: %v (%v)", e, err)
			}
			plain, err := sm2.Decrypt(resultKey, enc)
			if err != nil || !bytes.Equal(plain, keys[str(e, "envelope_id")]) {
				t.Fatalf("envelope %s released %x (%v)", str(e, "envelope_id"), plain, err)
			}
			released++
		}
	}
	if released != 2 {
		t.Fatalf("released %d envelopes, want 2", released)
	}
	envs := sys.ok("GET", "/v1/openings/"+o+"/envelopes?page_size=10", nil)
	if list, _ := envs["envelopes"].([]any); len(list) != 2 {
		t.Fatalf("envelopes: %v", envs)
	}

	closed := sys.ok("POST", "/v1/openings/"+o+"/close", map[string]any{})
	if str(closed, "opening", "state") != "OPENING_STATE_CLOSED" {
		t.Fatalf("close: %v", closed)
	}
	var report []byte
	lines, _ = sys.stream("/v1/openings/"+o+"/report", nil)
	for l := range lines {
		chunk, err := base64.StdEncoding.DecodeString(str(l, "result", "chunk"))
		if err != nil || l["error"] != nil {
			t.Fatalf("report line: %v (%v)", l, err)
		}
		report = append(report, chunk...)
	}
	scanKey := sys.ok("GET", "/v1/scan/key", nil)
	rep, err := bidopening.Verify(report, parseECKey(t, str(scanKey, "public_key_pem")))
	if err != nil {
		t.Fatalf("the report does not verify: %v", err)
	}
	if len(rep.Consents) != 1 || len(rep.Envelopes) != 2 {
		t.Fatalf("report: %d consents, %d envelopes", len(rep.Consents), len(rep.Envelopes))
	}
}
