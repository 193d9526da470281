// Package adminclient is a Go client of hufu's admin HTTP surface (package admin): typed
// methods for every endpoint, over HTTPS or loopback HTTP, with a bearer token. Errors from
// the server are *Error values carrying the HTTP status, the server's message and the
// request id, so a caller (the `hufu admin` CLI) can map them to exit codes and show the
// message as the server worded it.
//
// The wire types are declared here rather than imported from package admin, which brings
// the HSM (cgo) and the store with it; the end-to-end tests run this client against the
// real server, so the two cannot drift apart unnoticed.
package adminclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config configures a Client.
type Config struct {
	// URL is the admin listener's base URL, e.g. "http://127.0.0.1:7080" or
	// "https://hufu.example:7080".
	URL string
	// Token is the admin bearer token (a hufu_admin_... string). Keep it out of logs.
	Token string
	// CAFile, if set, is the PEM file of the CA that issued the admin listener's
	// certificate (instead of the system roots); ServerName overrides the name checked.
	CAFile     string
	ServerName string
	// HTTPClient, if set, is used as is (CAFile and ServerName are then ignored).
	HTTPClient *http.Client
	// Timeout bounds each request without a deadline of its own, except the streaming
	// ones (audit export, backup), which end with their context. Default 1 minute.
	Timeout time.Duration
}

// Client calls one admin surface. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	// http has no overall timeout (exports and backups take as long as they take); other
	// requests get timeout through their context.
	http    *http.Client
	timeout time.Duration
}

// New checks cfg and returns a client. It makes no request.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("adminclient: URL: want http(s)://host:port, got %q", cfg.URL)
	}
	if ip := net.ParseIP(u.Hostname()); u.Scheme == "http" && u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		// The bearer token would cross a network in clear; the appliance refuses to listen so.
		return nil, fmt.Errorf("adminclient: URL: %q: use https for an admin listener that is not on loopback", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	c := &Client{base: u, token: cfg.Token, timeout: cfg.Timeout}
	if cfg.HTTPClient != nil {
		c.http = cfg.HTTPClient
		return c, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" || cfg.ServerName != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("adminclient: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("adminclient: CA file %s: no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// Error is a non-success answer of the admin surface.
type Error struct {
	Status    int    // HTTP status: 400 bad input, 401 no valid token, 403 role or duty, 404, 409 state, 503
	Message   string // the server's message, one line
	RequestID string // the X-Request-Id of the request, for the daemon's log
}

func (e *Error) Error() string {
	return fmt.Sprintf("admin: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// do sends a request and returns the response if its status is one of ok; otherwise it
// reads the body into an *Error. The caller closes the body. A request that is not a
// stream and has no deadline gets the client's Timeout, released when the body is closed.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, stream bool, ok ...int) (*http.Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("adminclient: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	cancel := context.CancelFunc(func() {})
	if _, has := ctx.Deadline(); !has && !stream {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	req, err := c.request(ctx, method, u.String(), rd, body != nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("adminclient: %s %s: %w", method, path, err)
	}
	if err := check(resp, ok); err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func (c *Client) request(ctx context.Context, method, u string, body io.Reader, isJSON bool) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("adminclient: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// check turns a status outside ok into an *Error, closing the body.
func check(resp *http.Response, ok []int) error {
	for _, s := range ok {
		if resp.StatusCode == s {
			return nil
		}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	return &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(b)), RequestID: resp.Header.Get("X-Request-Id")}
}

func (c *Client) getJSON(ctx context.Context, method, path string, query url.Values, body, out any, ok ...int) (int, error) {
	resp, err := c.do(ctx, method, path, query, body, false, ok...)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("adminclient: %s %s: decoding the answer: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

func (c *Client) getBytes(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.do(ctx, "GET", path, nil, nil, false, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Live reports whether the daemon answers /livez (no token needed).
func (c *Client) Live(ctx context.Context) error {
	_, err := c.getBytes(ctx, "/livez")
	return err
}

// Readiness is the answer of /readyz?verbose: Ready and the report's lines ("[+]hsm ok",
// "[-]store failed: ..." — errors only with a valid token).
type Readiness struct {
	Ready bool
	Lines []string
}

// Ready runs the readiness checks. Not being ready is an answer, not an error.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	resp, err := c.do(ctx, "GET", "/readyz", url.Values{"verbose": {""}}, nil, false, http.StatusOK, http.StatusServiceUnavailable)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("adminclient: readyz: %w", err)
	}
	return &Readiness{Ready: resp.StatusCode == http.StatusOK, Lines: strings.Split(strings.TrimSpace(string(b)), "\n")}, nil
}

// Metrics returns the Prometheus text exposition of /metrics.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) { return c.getBytes(ctx, "/metrics") }

// AuditExport streams audit records from..to (0: from the start, to the head; JSON lines,
// verify with `hufu audit verify` or store.VerifyExport) into w.
func (c *Client) AuditExport(ctx context.Context, w io.Writer, from, to uint64) error {
	q := url.Values{}
	if from != 0 {
		q.Set("from", strconv.FormatUint(from, 10))
	}
	if to != 0 {
		q.Set("to", strconv.FormatUint(to, 10))
	}
	resp, err := c.do(ctx, "GET", "/audit/export", q, nil, true, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("adminclient: audit export cut short: %w", err)
	}
	return nil
}

// Checkpoint is one signed audit checkpoint.
type Checkpoint struct {
	Size  uint64 `json:"size"`
	Head  string `json:"head"`
	Time  string `json:"time"`
	KeyID string `json:"key_id"`
	Sig   string `json:"sig"`
}

// Checkpoints lists up to limit (1..1000; 0 for the server's default) checkpoints after
// log size after; next, if not 0, is the after of the next page.
func (c *Client) Checkpoints(ctx context.Context, after uint64, limit int) (cks []Checkpoint, next uint64, err error) {
	q := url.Values{}
	if after != 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Checkpoints []Checkpoint `json:"checkpoints"`
		Next        string       `json:"next"`
	}
	if _, err := c.getJSON(ctx, "GET", "/audit/checkpoints", q, nil, &out, http.StatusOK); err != nil {
		return nil, 0, err
	}
	if out.Next != "" {
		if next, err = strconv.ParseUint(out.Next, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("adminclient: checkpoints: next %q: %w", out.Next, err)
		}
	}
	return out.Checkpoints, next, nil
}

// AuditPublicKey returns the PEM public key that verifies audit checkpoints.
func (c *Client) AuditPublicKey(ctx context.Context) ([]byte, error) {
	return c.getBytes(ctx, "/audit/public-key")
}

// Backup streams a backup (an encrypted archive, package backup; see docs/operations.md
// for the restore) into w and returns the archive's file name as the server names it. If the
// stream is cut short after it began, the error says so and w holds a truncated archive.
func (c *Client) Backup(ctx context.Context, w io.Writer) (string, error) {
	resp, err := c.do(ctx, "POST", "/backup", nil, nil, true, http.StatusOK)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	name := "hufu-backup.hufubak"
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		name = params["filename"]
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return name, fmt.Errorf("adminclient: backup cut short: %w", err)
	}
	return name, nil
}

// KEK is one KEK version on the token.
type KEK struct {
	Label   string `json:"label"`
	Version int    `json:"version"`
	Current bool   `json:"current"`
}

// Progress is one domain's part of a rotation.
type Progress struct {
	Done      int `json:"done"`
	Total     int `json:"total"`
	Rewrapped int `json:"rewrapped"`
}

// KEKStatus is GET /kek: the KEK versions and the rotation's state (idle, running,
// rewrapped, failed, finished) and progress.
type KEKStatus struct {
	State    string               `json:"state"`
	Current  string               `json:"current_kek"`
	KEKs     []KEK                `json:"keks"`
	From     string               `json:"from_kek,omitempty"`
	To       string               `json:"to_kek,omitempty"`
	Actor    string               `json:"actor,omitempty"`
	Started  *time.Time           `json:"started,omitempty"`
	Ended    *time.Time           `json:"ended,omitempty"`
	Progress map[string]*Progress `json:"progress,omitempty"`
	Error    string               `json:"error,omitempty"`
	// LastErasure is when the last KEK erasure finished; ErasureDue when the next scheduled
	// one is due (nil without a schedule).
	LastErasure *time.Time `json:"last_erasure,omitempty"`
	ErasureDue  *time.Time `json:"erasure_due,omitempty"`
}

// KEKStatus returns the KEK versions and the rotation's progress.
func (c *Client) KEKStatus(ctx context.Context) (*KEKStatus, error) {
	var st KEKStatus
	if _, err := c.getJSON(ctx, "GET", "/kek", nil, nil, &st, http.StatusOK); err != nil {
		return nil, err
	}
	return &st, nil
}

// RotateKEK creates the next KEK and starts the background rewrap; follow it with
// KEKStatus. A rotation already running is an *Error with status 409.
func (c *Client) RotateKEK(ctx context.Context) (*KEKStatus, error) {
	var st KEKStatus
	if _, err := c.getJSON(ctx, "POST", "/kek/rotate", nil, nil, &st, http.StatusAccepted); err != nil {
		return nil, err
	}
	return &st, nil
}

// KEKFinished is the answer of FinishKEK.
type KEKFinished struct {
	Destroyed []string `json:"destroyed"`
	Current   string   `json:"current_kek"`
}

// FinishKEK sweeps once more, checks that no blob refers to an old KEK and destroys the
// old KEKs. Take a new backup afterwards.
func (c *Client) FinishKEK(ctx context.Context) (*KEKFinished, error) {
	var out KEKFinished
	if _, err := c.getJSON(ctx, "POST", "/kek/finish", nil, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// KEKErasure is the answer of EraseKEK.
type KEKErasure struct {
	From      string    `json:"from_kek"`
	Current   string    `json:"current_kek"`
	Resumed   bool      `json:"resumed"`
	Rewrapped int       `json:"rewrapped_blobs"`
	Destroyed []string  `json:"destroyed"`
	Finished  time.Time `json:"finished"`
	Backups   string    `json:"backups,omitempty"`
}

// EraseKEK runs a KEK erasure now and returns when it has finished: a new KEK, every live
// blob rewrapped, the store compacted, the old KEKs destroyed. Revoked shares are then
// unrecoverable from old files and backups, and every backup taken before can no longer
// be restored. A rotation, finish or erasure already running is an *Error with status 409.
func (c *Client) EraseKEK(ctx context.Context) (*KEKErasure, error) {
	var out KEKErasure
	if _, err := c.getJSON(ctx, "POST", "/kek/erase", nil, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// CRL returns the DER CRL of the embedded CA caID (no token needed).
func (c *Client) CRL(ctx context.Context, caID string) ([]byte, error) {
	return c.getBytes(ctx, "/crl/"+url.PathEscape(caID))
}

// TokenInfo describes an admin token, without its secret.
type TokenInfo struct {
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	Source     string     `json:"source"` // config or online
	State      string     `json:"state"`  // active, expired, revoked, awaiting_approval, shadowed
	CreatedBy  string     `json:"created_by,omitempty"`
	Created    *time.Time `json:"created,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
	Revoked    *time.Time `json:"revoked,omitempty"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
	ApprovalID string     `json:"approval_id,omitempty"`
}

// CreatedToken is a new token: Token is shown only in this answer.
type CreatedToken struct {
	Token    string    `json:"token"`
	Info     TokenInfo `json:"info"`
	Approval *Approval `json:"approval,omitempty"` // a security_officer token waits for it
}

// Tokens lists the configuration's and the online admin tokens.
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out struct {
		Tokens []TokenInfo `json:"tokens"`
	}
	if _, err := c.getJSON(ctx, "GET", "/tokens", nil, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Tokens, nil
}

// CreateToken creates an online token for name with role (operator, auditor,
// security_officer, metrics_reader) valid for expiresIn (at least a minute).
func (c *Client) CreateToken(ctx context.Context, name, role string, expiresIn time.Duration) (*CreatedToken, error) {
	var out CreatedToken
	body := map[string]string{"name": name, "role": role, "expires_in": expiresIn.String()}
	if _, err := c.getJSON(ctx, "POST", "/tokens", nil, body, &out, http.StatusCreated, http.StatusAccepted); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeToken revokes an online token; it is refused from then on.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	_, err := c.getJSON(ctx, "DELETE", "/tokens/"+url.PathEscape(name), nil, nil, nil, http.StatusNoContent)
	return err
}

// Approval is a request that waits for a second security officer.
type Approval struct {
	ID            string        `json:"id"`
	Kind          string        `json:"kind"`  // system_client.register, token.create or ca.revoke_issuing
	State         string        `json:"state"` // pending, approved, rejected, expired
	RequestedBy   string        `json:"requested_by"`
	RequestedRole string        `json:"requested_role"`
	Requested     time.Time     `json:"requested"`
	Expires       time.Time     `json:"expires"`
	DecidedBy     string        `json:"decided_by,omitempty"`
	Decided       *time.Time    `json:"decided,omitempty"`
	SystemClient  *SystemClient `json:"system_client,omitempty"`
	Desks         []string      `json:"desks,omitempty"`
	TokenName     string        `json:"token_name,omitempty"`
	// IssuingCARevocation is the issuing CA a ca.revoke_issuing request revokes.
	IssuingCARevocation *IssuingCARevocation `json:"issuing_ca_revocation,omitempty"`
}

// Decision is the answer to Approve or Reject.
type Decision struct {
	Approval    Approval           `json:"approval"`
	Client      *SystemClient      `json:"client,omitempty"`
	Certificate *IssuedCertificate `json:"certificate,omitempty"`
	Token       *TokenInfo         `json:"token,omitempty"`
	// IssuingCARevoked is what an approved ca.revoke_issuing request did.
	IssuingCARevoked *IssuingCARevoked `json:"issuing_ca_revoked,omitempty"`
}

// IssuingCARevocation is an embedded CA's issuing CA to revoke and the RFC 5280 reason:
// keyCompromise, cACompromise, affiliationChanged, superseded or cessationOfOperation.
type IssuingCARevocation struct {
	CA     string `json:"ca"`
	Reason string `json:"reason"`
}

// IssuingCARevoked is what an approved revocation of an issuing CA did.
type IssuingCARevoked struct {
	CA            string    `json:"ca"`
	IssuingSerial string    `json:"issuing_serial"`
	Reason        string    `json:"reason"`
	Revoked       time.Time `json:"revoked"`
	RootCRLNumber uint64    `json:"root_crl_number,omitempty"`
	RootCRLError  string    `json:"root_crl_error,omitempty"`
}

// RequestedApproval is the answer to a request that waits for a second security officer.
type RequestedApproval struct {
	Approval Approval `json:"approval"`
	Note     string   `json:"note"`
}

// RevokeIssuingCA asks to revoke the issuing CA of embedded CA caID for reason; a second
// security officer makes it happen by approving the returned request (Approve).
func (c *Client) RevokeIssuingCA(ctx context.Context, caID, reason string) (*RequestedApproval, error) {
	var out RequestedApproval
	body := IssuingCARevocation{CA: caID, Reason: reason}
	if _, err := c.getJSON(ctx, "POST", "/ca/revoke-issuing", nil, body, &out, http.StatusAccepted); err != nil {
		return nil, err
	}
	return &out, nil
}

// Approvals lists approval requests; state ("" for all) filters them.
func (c *Client) Approvals(ctx context.Context, state string) ([]Approval, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	var out struct {
		Approvals []Approval `json:"approvals"`
	}
	if _, err := c.getJSON(ctx, "GET", "/approvals", q, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Approvals, nil
}

// Approve approves request id (as a security officer other than the one who asked) and
// makes the change it asked for.
func (c *Client) Approve(ctx context.Context, id string) (*Decision, error) {
	var out Decision
	if _, err := c.getJSON(ctx, "POST", "/approvals/"+url.PathEscape(id)+"/approve", nil, nil, &out, http.StatusOK, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// Reject rejects (or, by the one who asked, withdraws) request id.
func (c *Client) Reject(ctx context.Context, id string) (*Decision, error) {
	var out Decision
	if _, err := c.getJSON(ctx, "POST", "/approvals/"+url.PathEscape(id)+"/reject", nil, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// SystemClient is a business or bid-opening system and the gRPC services it may call.
type SystemClient struct {
	Name              string   `json:"name"`
	Services          []string `json:"services"`
	Desks             []string `json:"desks,omitempty"`
	Source            string   `json:"source,omitempty"` // config or registered
	RegisteredBy      string   `json:"registered_by,omitempty"`
	CertificateSerial string   `json:"certificate_serial,omitempty"`
}

// IssuedCertificate is a development client certificate and its key, shown once.
type IssuedCertificate struct {
	Serial         string `json:"serial"`
	CertificatePEM string `json:"certificate_pem"`
	KeyPEM         string `json:"key_pem"`
}

// Registration is the answer to RegisterSystemClient: either the registered client (and,
// in development, its certificate), or, when the services include a desk, the approval
// request a second security officer must approve.
type Registration struct {
	Client      *SystemClient      `json:"client,omitempty"`
	Certificate *IssuedCertificate `json:"certificate,omitempty"`
	Approval    *Approval          `json:"approval,omitempty"`
	Note        string             `json:"note,omitempty"`
}

// SystemClients lists the configured and the registered system clients.
func (c *Client) SystemClients(ctx context.Context) ([]SystemClient, error) {
	var out struct {
		Clients []SystemClient `json:"clients"`
	}
	if _, err := c.getJSON(ctx, "GET", "/system-clients", nil, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Clients, nil
}

// RegisterSystemClient registers name for services (full names, "hufu.v1.ScanService").
func (c *Client) RegisterSystemClient(ctx context.Context, name string, services []string) (*Registration, error) {
	var out Registration
	body := struct {
		Name     string   `json:"name"`
		Services []string `json:"services"`
	}{name, services}
	if _, err := c.getJSON(ctx, "POST", "/system-clients", nil, body, &out, http.StatusCreated, http.StatusAccepted); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveSystemClient removes a registered client's permissions.
func (c *Client) RemoveSystemClient(ctx context.Context, name string) error {
	_, err := c.getJSON(ctx, "DELETE", "/system-clients/"+url.PathEscape(name), nil, nil, nil, http.StatusNoContent)
	return err
}
