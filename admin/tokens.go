package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Online admin tokens: created, listed and revoked on the admin surface by a security
// officer, stored (only their SHA-256) at z/token/<name> with the audit record of each
// change in the same batch, and mirrored in memory for authentication, so that a
// revocation or an expiry (by the injected clock) refuses the token at once. The
// configuration's admin.tokens remain the bootstrap: they are listed here but changed only
// in hufu.yaml, and no online token may take one of their names.

var tokenRecords = store.NewCollection(store.KindAdmin, func() *storepb.AdminToken { return new(storepb.AdminToken) })

const tokenIDPrefix = "token/"

// tokenRetention is how long a token's record outlives its expiry: long enough that its
// name keeps meaning one holder while the audit records that name it are reviewed.
const tokenRetention = 90 * 24 * time.Hour

// tokenNameRE is the configuration's rule for token names (daemon/config).
var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Token states, as GET /tokens shows them.
const (
	TokenActive           = "active"
	TokenExpired          = "expired"
	TokenRevoked          = "revoked"
	TokenAwaitingApproval = "awaiting_approval" // a security_officer token before the second officer approves
	TokenShadowed         = "shadowed"          // an online token whose name the configuration took later: refused
)

// TokenInfo describes one token; it never carries the token or its hash.
type TokenInfo struct {
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	Source     string     `json:"source"` // "config" or "online"
	State      string     `json:"state"`
	CreatedBy  string     `json:"created_by,omitempty"`
	Created    *time.Time `json:"created,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
	Revoked    *time.Time `json:"revoked,omitempty"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
	ApprovalID string     `json:"approval_id,omitempty"`
}

// CreateTokenRequest is the body of POST /tokens.
type CreateTokenRequest struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// ExpiresIn is the token's lifetime as a Go duration ("720h"), at most Options.MaxTokenTTL.
	ExpiresIn string `json:"expires_in"`
}

// CreatedToken is the answer to POST /tokens: the token, shown this once, and what was
// stored. A security_officer token comes with the approval request it waits for.
type CreatedToken struct {
	Token    string    `json:"token"`
	Info     TokenInfo `json:"info"`
	Approval *Approval `json:"approval,omitempty"`
}

type onlineTokens struct {
	mu     sync.RWMutex
	byHash map[[32]byte]*storepb.AdminToken
	byName map[string]*storepb.AdminToken
}

func (o *onlineTokens) set(t *storepb.AdminToken) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if old := o.byName[t.Name]; old != nil {
		delete(o.byHash, [32]byte(old.Sha256))
	}
	o.byName[t.Name] = t
	o.byHash[[32]byte(t.Sha256)] = t
}

func (o *onlineTokens) get(name string) *storepb.AdminToken {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.byName[name]
}

// authenticate accepts only a live token: not revoked, not awaiting approval, before its
// expiry.
func (o *onlineTokens) authenticate(h [32]byte, now time.Time) (Token, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	t := o.byHash[h]
	if t == nil || tokenState(t, now) != TokenActive {
		return Token{}, false
	}
	return Token{Name: t.Name, Role: Role(t.Role), SHA256: h}, true
}

func (o *onlineTokens) live(now time.Time) int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	n := 0
	for _, t := range o.byName {
		if s := tokenState(t, now); s == TokenActive || s == TokenAwaitingApproval {
			n++
		}
	}
	return n
}

func tokenState(t *storepb.AdminToken, now time.Time) string {
	switch {
	case t.RevokedUnixNano != 0:
		return TokenRevoked
	case now.UnixNano() >= t.ExpiresUnixNano:
		return TokenExpired
	case t.ApprovalId != "":
		return TokenAwaitingApproval
	}
	return TokenActive
}

// loadOnline reads the stored tokens. One whose name the configuration has since taken is
// left out (the configuration is the bootstrap and wins) and reported in the log.
func (s *Server) loadOnline(ctx context.Context) error {
	s.online = onlineTokens{byHash: map[[32]byte]*storepb.AdminToken{}, byName: map[string]*storepb.AdminToken{}}
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := tokenRecords.List(ctx, s.opts.Store, tokenIDPrefix, opts, nil)
		if err != nil {
			return fmt.Errorf("admin: loading the online tokens: %w", err)
		}
		for _, it := range page.Items {
			t := it.Value
			if len(t.Sha256) != sha256.Size {
				return fmt.Errorf("admin: online token %q: stored hash has %d bytes", t.Name, len(t.Sha256))
			}
			if s.configNames[t.Name] {
				s.opts.Log.Warn("admin: an online token has the name of a configured token and is refused; revoke it", "name", t.Name)
				continue
			}
			s.online.set(t)
		}
		if page.Next == "" {
			return nil
		}
		opts.Cursor = page.Next
	}
}

func unixTime(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func onlineInfo(t *storepb.AdminToken, now time.Time) TokenInfo {
	return TokenInfo{
		Name: t.Name, Role: Role(t.Role), Source: "online", State: tokenState(t, now),
		CreatedBy: t.CreatedBy, Created: unixTime(t.CreatedUnixNano), Expires: unixTime(t.ExpiresUnixNano),
		Revoked: unixTime(t.RevokedUnixNano), RevokedBy: t.RevokedBy, ApprovalID: t.ApprovalId,
	}
}

// listTokens lists the configuration's tokens, then the stored ones (also those the
// configuration shadows), without secrets.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, _ Token) {
	out, err := s.Tokens(r.Context())
	if err != nil {
		s.writeError(w, "listing tokens", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Tokens []TokenInfo `json:"tokens"`
	}{out})
}

// decodeBody reads a JSON object strictly (unknown fields are errors) into v; the error
// names the field at fault where the decoder knows it.
func decodeBody(r *http.Request, v any, want string) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Invalid("%s: want a %s", te.Field, te.Type)
		}
		return Invalid("body: want %s: %v", want, err)
	}
	if dec.More() {
		return Invalid("body: want one JSON object %s", want)
	}
	return nil
}

// validateTokenRequest checks a creation request field by field.
func (s *Server) validateTokenRequest(req CreateTokenRequest) (time.Duration, error) {
	if !tokenNameRE.MatchString(req.Name) {
		return 0, Invalid("name: want 1..64 of [A-Za-z0-9._@-], starting with a letter or digit")
	}
	if !validRole(req.Role) {
		return 0, Invalid("role: %q is not one of operator, auditor, security_officer, metrics_reader", req.Role)
	}
	if req.ExpiresIn == "" {
		return 0, Invalid("expires_in: required, a duration such as \"720h\" (at most %s)", s.opts.MaxTokenTTL)
	}
	ttl, err := time.ParseDuration(req.ExpiresIn)
	if err != nil {
		return 0, Invalid("expires_in: %q is not a duration such as \"720h\"", req.ExpiresIn)
	}
	if ttl < time.Minute || ttl > s.opts.MaxTokenTTL {
		return 0, Invalid("expires_in: want 1m..%s, got %s", s.opts.MaxTokenTTL, ttl)
	}
	if s.configNames[req.Name] {
		return 0, Conflict("name: %q is a token of the configuration (admin.tokens)", req.Name)
	}
	return ttl, nil
}

// createToken makes a token, stores its hash and audits the creation in one batch, and
// answers with the token once. A security_officer token is stored inactive with an
// approval request: it opens nothing until a second officer approves, so that one officer
// cannot make themselves the second.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, who Token) {
	var req CreateTokenRequest
	err := decodeBody(r, &req, `{"name": ..., "role": ..., "expires_in": "720h"}`)
	var ttl time.Duration
	if err == nil {
		ttl, err = s.validateTokenRequest(req)
	}
	// Under changeMu, which every change of the online tokens holds, so that concurrent
	// creations cannot pass the limit together.
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if err == nil && s.online.live(s.opts.Clock.Now()) >= s.opts.MaxTokens {
		err = Conflict("tokens: %d online tokens are live, the most allowed; revoke one first", s.opts.MaxTokens)
	}
	if err != nil {
		s.refuse(w, r, who, "admin.token.create", map[string]string{"name": safeName(req.Name)}, "creating a token", err)
		return
	}
	secret, hashHex, err := NewToken()
	if err != nil {
		s.writeError(w, "creating a token", err)
		return
	}
	h, _ := ParseTokenHash(hashHex)
	var rec *storepb.AdminToken
	var appr *storepb.AdminApproval
	err = s.opts.Store.Update(r.Context(), func(tx *store.Tx) error {
		now := tx.Now()
		if old, err := tokenRecords.Get(tx, tokenIDPrefix+req.Name); err == nil {
			return Conflict("name: %q is taken by an online token (%s)", req.Name, tokenState(old, now))
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		rec = &storepb.AdminToken{Name: req.Name, Role: string(req.Role), Sha256: h[:], CreatedUnixNano: now.UnixNano(),
			CreatedBy: who.Name, Principal: s.principal(who.Name), ExpiresUnixNano: now.Add(ttl).UnixNano()}
		details := map[string]string{"role": string(who.Role), "token": who.Name, "name": req.Name, "new_role": string(req.Role),
			"expires": time.Unix(0, rec.ExpiresUnixNano).UTC().Format(time.RFC3339)}
		if req.Role == SecurityOfficer {
			appr = s.newApproval(now, who, ApprovalToken)
			appr.TokenName = req.Name
			rec.ApprovalId = appr.Id
			details["approval"] = appr.Id
			if err := putApproval(tx, appr); err != nil {
				return err
			}
		}
		if err := tokenRecords.Put(tx, tokenIDPrefix+req.Name, rec, store.ExpiresAt(time.Unix(0, rec.ExpiresUnixNano).Add(tokenRetention))); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "admin:" + who.Name, Action: "admin.token.create", Subject: "z/token/" + req.Name,
			Outcome: store.OutcomeOK, Details: details})
	})
	if err != nil {
		s.refuse(w, r, who, "admin.token.create", map[string]string{"name": req.Name}, "creating a token", err)
		return
	}
	s.online.set(rec)
	out := CreatedToken{Token: secret, Info: onlineInfo(rec, s.opts.Clock.Now())}
	code := http.StatusCreated
	if appr != nil {
		a := approvalJSON(appr, s.opts.Clock.Now())
		out.Approval = &a
		code = http.StatusAccepted
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, out)
}

// revokeToken revokes an online token: refused from the moment the batch commits.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, who Token) {
	name := r.PathValue("name")
	var err error
	switch {
	case !tokenNameRE.MatchString(name):
		err = Invalid("name: want 1..64 of [A-Za-z0-9._@-]")
	case s.configNames[name]:
		err = Conflict("name: %q is a token of the configuration (admin.tokens); remove it there and restart", name)
	}
	if err != nil {
		s.refuse(w, r, who, "admin.token.revoke", map[string]string{"name": safeName(name)}, "revoking a token", err)
		return
	}
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	var rec *storepb.AdminToken
	err = s.opts.Store.Update(r.Context(), func(tx *store.Tx) error {
		t, err := tokenRecords.Get(tx, tokenIDPrefix+name)
		if errors.Is(err, store.ErrNotFound) {
			return NotFound("no online token %q", name)
		} else if err != nil {
			return err
		}
		if t.RevokedUnixNano != 0 {
			return Conflict("%q was revoked at %s", name, time.Unix(0, t.RevokedUnixNano).UTC().Format(time.RFC3339))
		}
		t.RevokedUnixNano, t.RevokedBy = tx.Now().UnixNano(), who.Name
		if err := tokenRecords.Put(tx, tokenIDPrefix+name, t, store.ExpiresAt(time.Unix(0, t.ExpiresUnixNano).Add(tokenRetention))); err != nil {
			return err
		}
		rec = t
		return tx.Audit(store.Event{Actor: "admin:" + who.Name, Action: "admin.token.revoke", Subject: "z/token/" + name,
			Outcome: store.OutcomeOK, Details: map[string]string{"role": string(who.Role), "token": who.Name, "name": name, "revoked_role": t.Role}})
	})
	if err != nil {
		s.refuse(w, r, who, "admin.token.revoke", map[string]string{"name": name}, "revoking a token", err)
		return
	}
	s.online.set(rec)
	w.WriteHeader(http.StatusNoContent)
}

// refuse audits a refused change (outside any batch: nothing changed) and answers with
// the error.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, who Token, action string, details map[string]string, what string, err error) {
	d := map[string]string{"error": err.Error()}
	for k, v := range details {
		d[k] = v
	}
	_ = s.audit(r, who, action, store.OutcomeDenied, d)
	s.writeError(w, what, err)
}

// safeName is a caller-supplied name fit for an audit record: as given if it is a valid
// name, else a placeholder (it may be anything, of any length).
func safeName(name string) string {
	if tokenNameRE.MatchString(name) {
		return name
	}
	return "(invalid)"
}

// Tokens lists the configured tokens, then the online ones by name, with their state by
// the clock (GET /tokens; the console's tokens screen).
func (s *Server) Tokens(ctx context.Context) ([]TokenInfo, error) {
	now := s.opts.Clock.Now()
	out := []TokenInfo{}
	for _, t := range s.opts.Tokens {
		out = append(out, TokenInfo{Name: t.Name, Role: t.Role, Source: "config", State: TokenActive})
	}
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := tokenRecords.List(ctx, s.opts.Store, tokenIDPrefix, opts, nil)
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			info := onlineInfo(it.Value, now)
			if s.configNames[info.Name] {
				info.State = TokenShadowed
			}
			out = append(out, info)
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	sort.SliceStable(out[len(s.opts.Tokens):], func(i, j int) bool {
		return out[len(s.opts.Tokens)+i].Name < out[len(s.opts.Tokens)+j].Name
	})
	return out, nil
}
