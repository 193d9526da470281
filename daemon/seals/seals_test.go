package seals

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// standInEnterprises stands in for daemon/enterprises: roles per enterprise and user.
type standInEnterprises struct {
	mu    sync.Mutex
	roles map[string]map[string]Role
}

func (e *standInEnterprises) RoleIn(_ context.Context, uscc, user string) (Role, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, ok := e.roles[uscc]
	if !ok {
		return RoleNone, apierr.New(apierr.NotFound, "no enterprise %s (stand-in)", uscc)
	}
	return m[user], nil
}

func (e *standInEnterprises) set(uscc, user string, r Role) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.roles[uscc] == nil {
		e.roles[uscc] = map[string]Role{}
	}
	e.roles[uscc][user] = r
}

// standInCertificates stands in for daemon/certs: active certificates and their owners.
type standInCertificates struct {
	mu     sync.Mutex
	owners map[string][2]string
}

func (c *standInCertificates) CertificateOwner(_ context.Context, serial string) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.owners[serial]
	if !ok {
		return "", "", apierr.New(apierr.NotFound, "no certificate (stand-in)")
	}
	return o[0], o[1], nil
}

var (
	_ Enterprises  = (*standInEnterprises)(nil)
	_ Certificates = (*standInCertificates)(nil)
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type signer struct{ k *ecdsa.PrivateKey }

func (s signer) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s signer) PublicKey() *ecdsa.PublicKey { return &s.k.PublicKey }

const (
	uscc      = "91350100M000100Y43"
	otherUSCC = "91110000802100433B" // valid, but no such enterprise here
	admin     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	staff     = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" // authorised to the seal under test
	staff2    = "cccccccccccccccccccccccccccccccc" // a member, not authorised
	outsider  = "dddddddddddddddddddddddddddddddd"
	person    = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

	personalSerial   = "0123456789abcdef0123456789abcdef"
	enterpriseSerial = "fedcba9876543210fedcba9876543210"
)

type fixture struct {
	s     *Service
	st    *store.Store
	ents  *standInEnterprises
	certs *standInCertificates
	reg   *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Clock: c, Signer: signer{k},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	f := &fixture{st: st, ents: &standInEnterprises{roles: map[string]map[string]Role{}},
		certs: &standInCertificates{owners: map[string][2]string{
			personalSerial: {person, ""}, enterpriseSerial: {admin, uscc},
		}}, reg: prometheus.NewRegistry()}
	f.ents.set(uscc, admin, RoleAdmin)
	f.ents.set(uscc, staff, RoleStaff)
	f.ents.set(uscc, staff2, RoleStaff)
	f.s, err = New(Options{}, Deps{Store: st, Enterprises: f.ents, Certificates: f.certs, Clock: c, Registry: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func as(user string) authn.Caller { return authn.Caller{UserID: user, SessionID: "s", DeviceID: "d"} }

var reqSeq int

func (f *fixture) create(t *testing.T, user, ent string, typ hufuv1.SealType, serial string) *storepb.Seal {
	t.Helper()
	reqSeq++
	seal, err := f.s.Create(context.Background(), as(user), &hufuv1.CreateSealRequest{
		RequestId:      "request-" + strings.Repeat("0", 4) + string(rune('a'+reqSeq%26)) + time.Now().Format("150405.000000000"),
		EnterpriseUscc: ent, Name: "合同专用章", Type: typ, Image: stampPNG(t, 32, 32), CertificateSerial: serial})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return seal
}

func kind(err error) string {
	var e *apierr.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return map[apierr.Kind]string{apierr.NotFound: "NotFound", apierr.PermissionDenied: "PermissionDenied",
			apierr.InvalidArgument: "InvalidArgument", apierr.FailedPrecondition: "FailedPrecondition"}[e.Kind]
	}
	return "internal: " + err.Error()
}

func message(err error) string {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return ""
}

func TestCreateRoles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cases := []struct {
		name, user, ent string
		typ             hufuv1.SealType
		want            string
	}{
		{"admin: official seal", admin, uscc, hufuv1.SealType_SEAL_TYPE_OFFICIAL, "ok"},
		{"admin: finance seal", admin, uscc, hufuv1.SealType_SEAL_TYPE_FINANCE, "ok"},
		{"admin: a personal type for the enterprise", admin, uscc, hufuv1.SealType_SEAL_TYPE_PERSONAL, "InvalidArgument"},
		{"staff", staff, uscc, hufuv1.SealType_SEAL_TYPE_CONTRACT, "PermissionDenied"},
		{"outsider", outsider, uscc, hufuv1.SealType_SEAL_TYPE_CONTRACT, "NotFound"},
		{"no such enterprise", admin, otherUSCC, hufuv1.SealType_SEAL_TYPE_CONTRACT, "NotFound"},
		{"malformed USCC", admin, "91350100M000100Y44", hufuv1.SealType_SEAL_TYPE_CONTRACT, "InvalidArgument"},
		{"person: personal seal", person, "", hufuv1.SealType_SEAL_TYPE_PERSONAL, "ok"},
		{"person: handwritten signature", person, "", hufuv1.SealType_SEAL_TYPE_HANDWRITTEN_SIGNATURE, "ok"},
		{"person: an enterprise type", person, "", hufuv1.SealType_SEAL_TYPE_OFFICIAL, "InvalidArgument"},
		{"person: no type", person, "", hufuv1.SealType_SEAL_TYPE_UNSPECIFIED, "InvalidArgument"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.s.Create(ctx, as(c.user), &hufuv1.CreateSealRequest{RequestId: "create-roles-" + string(rune('a'+i)),
				EnterpriseUscc: c.ent, Name: "章", Type: c.typ, Image: stampPNG(t, 16, 16)})
			if got := kind(err); got != c.want {
				t.Fatalf("got %s (%v), want %s", got, err, c.want)
			}
		})
	}
	// An outsider and a caller naming a non-existent enterprise are told the same.
	_, e1 := f.s.Create(ctx, as(outsider), &hufuv1.CreateSealRequest{RequestId: "same-words-1", EnterpriseUscc: uscc, Name: "章",
		Type: hufuv1.SealType_SEAL_TYPE_OFFICIAL, Image: stampPNG(t, 8, 8)})
	_, e2 := f.s.Create(ctx, as(outsider), &hufuv1.CreateSealRequest{RequestId: "same-words-2", EnterpriseUscc: otherUSCC, Name: "章",
		Type: hufuv1.SealType_SEAL_TYPE_OFFICIAL, Image: stampPNG(t, 8, 8)})
	if strings.ReplaceAll(message(e1), uscc, "X") != strings.ReplaceAll(message(e2), otherUSCC, "X") {
		t.Fatalf("an outsider can tell an enterprise exists: %q vs %q", message(e1), message(e2))
	}
}

func TestCreateChecks(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	good := func() *hufuv1.CreateSealRequest {
		reqSeq++
		return &hufuv1.CreateSealRequest{RequestId: fmt.Sprintf("checks-%08d", reqSeq), Name: "张三之印",
			Type: hufuv1.SealType_SEAL_TYPE_PERSONAL, Image: stampPNG(t, 16, 16)}
	}
	cases := []struct {
		name, field string
		edit        func(r *hufuv1.CreateSealRequest)
	}{
		{"short request id", "request_id", func(r *hufuv1.CreateSealRequest) { r.RequestId = "x" }},
		{"empty name", "name", func(r *hufuv1.CreateSealRequest) { r.Name = "  " }},
		{"long name", "name", func(r *hufuv1.CreateSealRequest) { r.Name = strings.Repeat("章", 31) }},
		{"control character in the name", "name", func(r *hufuv1.CreateSealRequest) { r.Name = "章\n章" }},
		{"no image", "image", func(r *hufuv1.CreateSealRequest) { r.Image = nil }},
		{"unknown certificate", "certificate_serial", func(r *hufuv1.CreateSealRequest) { r.CertificateSerial = strings.Repeat("9", 32) }},
		{"the enterprise's certificate on a personal seal", "certificate_serial", func(r *hufuv1.CreateSealRequest) { r.CertificateSerial = enterpriseSerial }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := good()
			c.edit(r)
			_, err := f.s.Create(ctx, as(person), r)
			var e *apierr.Error
			if !errors.As(err, &e) || e.Kind != apierr.InvalidArgument || e.Field != c.field {
				t.Fatalf("want InvalidArgument on %s, got %v", c.field, err)
			}
		})
	}
	// Somebody else's personal certificate is refused like a missing one.
	r := good()
	r.CertificateSerial = personalSerial
	if _, err := f.s.Create(ctx, as(outsider), r); kind(err) != "InvalidArgument" {
		t.Fatalf("another person's certificate: %v", err)
	}
	// The enterprise's own certificate binds an enterprise seal; a personal one does not.
	if seal := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_OFFICIAL, enterpriseSerial); seal.CertificateSerial != enterpriseSerial {
		t.Fatal("certificate not bound")
	}
	_, err := f.s.Create(ctx, as(admin), &hufuv1.CreateSealRequest{RequestId: "bind-personal", EnterpriseUscc: uscc, Name: "章",
		Type: hufuv1.SealType_SEAL_TYPE_OFFICIAL, Image: stampPNG(t, 8, 8), CertificateSerial: personalSerial})
	if kind(err) != "InvalidArgument" {
		t.Fatalf("a personal certificate on an enterprise seal: %v", err)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := &hufuv1.CreateSealRequest{RequestId: "idem-00000001", EnterpriseUscc: uscc, Name: "公章", Type: hufuv1.SealType_SEAL_TYPE_OFFICIAL,
		Image: stampPNG(t, 16, 16)}
	a, err := f.s.Create(ctx, as(admin), req)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := f.st.Head()
	b, err := f.s.Create(ctx, as(admin), req)
	if err != nil || b.Id != a.Id {
		t.Fatalf("a repeated request made %v, %v", b, err)
	}
	if again, _ := f.st.Head(); again != head {
		t.Fatal("a repeated request wrote again")
	}
	// Another user's identical request id is another request.
	c, err := f.s.Create(ctx, as(person), &hufuv1.CreateSealRequest{RequestId: req.RequestId, Name: "私章",
		Type: hufuv1.SealType_SEAL_TYPE_PERSONAL, Image: req.Image})
	if err != nil || c.Id == a.Id {
		t.Fatalf("request ids are per user: %v %v", c, err)
	}
	if got := testutil.ToFloat64(f.s.m.changes.WithLabelValues("create")); got != 2 {
		t.Fatalf("hufu_seals_changes_total{action=create} = %v", got)
	}
}

// TestRoleMatrix runs every call as each of the administrator, an authorised member, a
// member it is not authorised to, an outsider and the person owning a personal seal.
func TestRoleMatrix(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ent := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_CONTRACT, "")
	own := f.create(t, person, "", hufuv1.SealType_SEAL_TYPE_HANDWRITTEN_SIGNATURE, "")
	if _, err := f.s.Authorise(ctx, as(admin), ent.Id, staff); err != nil {
		t.Fatal(err)
	}
	type call func(user string) error
	calls := map[string]func(seal string) call{
		"get": func(id string) call {
			return func(u string) error { _, _, err := f.s.Get(ctx, as(u), id); return err }
		},
		"usable": func(id string) call {
			return func(u string) error { _, err := f.s.SealUsable(ctx, as(u), id); return err }
		},
		"set state": func(id string) call {
			return func(u string) error {
				_, err := f.s.SetState(ctx, as(u), id, hufuv1.SealState_SEAL_STATE_ACTIVE)
				return err
			}
		},
		"authorise": func(id string) call {
			return func(u string) error { _, err := f.s.Authorise(ctx, as(u), id, staff); return err }
		},
		"unauthorise": func(id string) call {
			return func(u string) error { _, err := f.s.Unauthorise(ctx, as(u), id, staff2); return err }
		},
	}
	want := map[string]map[string][2]string{ // call -> user -> {enterprise seal, personal seal}
		"get":         {admin: {"ok", "NotFound"}, staff: {"ok", "NotFound"}, staff2: {"NotFound", "NotFound"}, outsider: {"NotFound", "NotFound"}, person: {"NotFound", "ok"}},
		"usable":      {admin: {"ok", "NotFound"}, staff: {"ok", "NotFound"}, staff2: {"NotFound", "NotFound"}, outsider: {"NotFound", "NotFound"}, person: {"NotFound", "ok"}},
		"set state":   {admin: {"ok", "NotFound"}, staff: {"PermissionDenied", "NotFound"}, staff2: {"NotFound", "NotFound"}, outsider: {"NotFound", "NotFound"}, person: {"NotFound", "ok"}},
		"authorise":   {admin: {"ok", "NotFound"}, staff: {"PermissionDenied", "NotFound"}, staff2: {"NotFound", "NotFound"}, outsider: {"NotFound", "NotFound"}, person: {"NotFound", "FailedPrecondition"}},
		"unauthorise": {admin: {"ok", "NotFound"}, staff: {"PermissionDenied", "NotFound"}, staff2: {"NotFound", "NotFound"}, outsider: {"NotFound", "NotFound"}, person: {"NotFound", "FailedPrecondition"}},
	}
	for name, mk := range calls {
		for user, w := range want[name] {
			for i, seal := range []*storepb.Seal{ent, own} {
				if got := kind(mk(seal.Id)(user)); got != w[i] {
					t.Errorf("%s of the %s seal as %s: got %s, want %s", name, []string{"enterprise", "personal"}[i], user[:1], got, w[i])
				}
			}
		}
	}
	// A seal that does not exist is answered like one the caller may not see.
	_, _, e1 := f.s.Get(ctx, as(outsider), ent.Id)
	_, _, e2 := f.s.Get(ctx, as(outsider), strings.Repeat("0", 32))
	if strings.ReplaceAll(message(e1), ent.Id, "X") != strings.ReplaceAll(message(e2), strings.Repeat("0", 32), "X") {
		t.Fatalf("%q vs %q", message(e1), message(e2))
	}
}

func TestListAndViews(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_OFFICIAL, "")
	b := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_FINANCE, "")
	own := f.create(t, person, "", hufuv1.SealType_SEAL_TYPE_PERSONAL, "")
	if _, err := f.s.Authorise(ctx, as(admin), a.Id, staff); err != nil {
		t.Fatal(err)
	}
	ids := func(list []*storepb.Seal) map[string]bool {
		m := map[string]bool{}
		for _, s := range list {
			m[s.Id] = true
		}
		return m
	}
	cases := []struct {
		name, user, ent string
		want            []string
		err             string
	}{
		{"admin sees every seal", admin, uscc, []string{a.Id, b.Id}, "ok"},
		{"staff see the authorised ones", staff, uscc, []string{a.Id}, "ok"},
		{"staff without authorisations see none", staff2, uscc, nil, "ok"},
		{"outsider", outsider, uscc, nil, "NotFound"},
		{"no such enterprise", admin, otherUSCC, nil, "NotFound"},
		{"a person's own", person, "", []string{own.Id}, "ok"},
		{"a person without seals", outsider, "", nil, "ok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			list, err := f.s.List(ctx, as(c.user), c.ent)
			if kind(err) != c.err {
				t.Fatalf("got %v, want %s", err, c.err)
			}
			got := ids(list)
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for _, id := range c.want {
				if !got[id] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
			for _, s := range list {
				if c.user == staff && len(s.AuthorisedUserIds) != 0 {
					t.Fatal("staff are shown whom else a seal is authorised to")
				}
				if c.user == admin && s.Id == a.Id && (len(s.AuthorisedUserIds) != 1 || s.AuthorisedUserIds[0] != staff) {
					t.Fatalf("admin sees authorisations %v", s.AuthorisedUserIds)
				}
			}
		})
	}
	// Get carries the image, listings do not store it in the record.
	seal, img, err := f.s.Get(ctx, as(staff), a.Id)
	if err != nil || len(img) == 0 || seal.ImageWidth != 32 || len(seal.AuthorisedUserIds) != 0 {
		t.Fatalf("get: %v %d %v", seal, len(img), err)
	}
}

func TestStateAndUse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seal := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_OFFICIAL, enterpriseSerial)
	if _, err := f.s.Authorise(ctx, as(admin), seal.Id, staff); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.SealUsable(ctx, as(staff), seal.Id); err != nil {
		t.Fatal(err)
	}
	out, err := f.s.SetState(ctx, as(admin), seal.Id, hufuv1.SealState_SEAL_STATE_DISABLED)
	if err != nil || out.State != stateDisabled {
		t.Fatalf("disable: %v %v", out, err)
	}
	head, _ := f.st.Head()
	if _, err := f.s.SetState(ctx, as(admin), seal.Id, hufuv1.SealState_SEAL_STATE_DISABLED); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.st.Head(); again != head {
		t.Fatal("disabling a disabled seal wrote")
	}
	if _, err := f.s.SealUsable(ctx, as(staff), seal.Id); kind(err) != "FailedPrecondition" {
		t.Fatalf("a disabled seal is usable: %v", err)
	}
	if _, err := f.s.SetState(ctx, as(admin), seal.Id, hufuv1.SealState_SEAL_STATE_UNSPECIFIED); kind(err) != "InvalidArgument" {
		t.Fatalf("unspecified state: %v", err)
	}
	if _, err := f.s.SetState(ctx, as(admin), seal.Id, hufuv1.SealState_SEAL_STATE_ACTIVE); err != nil {
		t.Fatal(err)
	}
	// The bound certificate is revoked: the seal cannot be used.
	f.certs.mu.Lock()
	delete(f.certs.owners, enterpriseSerial)
	f.certs.mu.Unlock()
	if _, err := f.s.SealUsable(ctx, as(admin), seal.Id); kind(err) != "FailedPrecondition" {
		t.Fatalf("a seal whose certificate is gone is usable: %v", err)
	}
	// A member who became an outsider without RevokeMember (a race) cannot use it either.
	f.ents.set(uscc, staff, RoleNone)
	if _, err := f.s.SealUsable(ctx, as(staff), seal.Id); kind(err) != "NotFound" {
		t.Fatalf("a former member can use the seal: %v", err)
	}
	for action, want := range map[string]float64{"disable": 1, "enable": 1, "authorise": 1} {
		if got := testutil.ToFloat64(f.s.m.changes.WithLabelValues(action)); got != want {
			t.Errorf("changes{%s} = %v, want %v", action, got, want)
		}
	}
}

func TestAuthorise(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seal := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_CONTRACT, "")
	if _, err := f.s.Authorise(ctx, as(admin), seal.Id, outsider); kind(err) != "InvalidArgument" {
		t.Fatalf("authorised to an outsider: %v", err)
	}
	if _, err := f.s.Authorise(ctx, as(admin), seal.Id, "not/a user"); kind(err) != "InvalidArgument" {
		t.Fatalf("authorised to a malformed id: %v", err)
	}
	for range 2 { // the second is not a change
		out, err := f.s.Authorise(ctx, as(admin), seal.Id, staff)
		if err != nil || len(out.AuthorisedUserIds) != 1 {
			t.Fatalf("%v %v", out, err)
		}
	}
	out, err := f.s.Unauthorise(ctx, as(admin), seal.Id, staff)
	if err != nil || len(out.AuthorisedUserIds) != 0 {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := grants.Read(ctx, f.st, grantID(uscc, staff)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an empty grants record is left: %v", err)
	}
	if _, _, err := f.s.Get(ctx, as(staff), seal.Id); kind(err) != "NotFound" {
		t.Fatalf("unauthorised staff still see the seal: %v", err)
	}
	deps := f.s.deps
	deps.Registry = nil
	small, err := New(Options{MaxAuthorised: 1}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Authorise(ctx, as(admin), seal.Id, staff); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Authorise(ctx, as(admin), seal.Id, staff2); kind(err) != "FailedPrecondition" {
		t.Fatalf("beyond MaxAuthorised: %v", err)
	}
}

func TestRevokeMember(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_CONTRACT, "")
	b := f.create(t, admin, uscc, hufuv1.SealType_SEAL_TYPE_FINANCE, "")
	for _, id := range []string{a.Id, b.Id} {
		for _, u := range []string{staff, staff2} {
			if _, err := f.s.Authorise(ctx, as(admin), id, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	before, _ := f.st.Head()
	// The enterprise domain's leaving transaction, with its own audit record.
	err := f.st.Update(ctx, func(tx *store.Tx) error {
		if err := f.s.RevokeMember(tx, uscc, staff); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "user:" + staff, Action: "enterprise.leave", Outcome: store.OutcomeOK})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.Id, b.Id} {
		seal, _, err := f.s.Get(ctx, as(admin), id)
		if err != nil || len(seal.AuthorisedUserIds) != 1 || seal.AuthorisedUserIds[0] != staff2 {
			t.Fatalf("after leaving: %v %v", seal, err)
		}
	}
	if _, err := grants.Read(ctx, f.st, grantID(uscc, staff)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("grants kept: %v", err)
	}
	after, _ := f.st.Head()
	if after != before+3 {
		t.Fatalf("%d audit records, want 2 withdrawals and the leaving", after-before)
	}
	for seq := before + 1; seq <= before+2; seq++ {
		r, err := f.st.AuditRecord(ctx, seq)
		if err != nil || r.Action != "seal.unauthorise" || r.Details["member"] != staff || r.Details["reason"] != "member-left" {
			t.Fatalf("record %d: %+v %v", seq, r, err)
		}
	}
	// Nothing authorised: nothing to do.
	if err := f.st.Update(ctx, func(tx *store.Tx) error { return f.s.RevokeMember(tx, uscc, outsider) }); err != nil {
		t.Fatal(err)
	}
}

func TestAuditHasNoSealNames(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seal := f.create(t, person, "", hufuv1.SealType_SEAL_TYPE_PERSONAL, personalSerial)
	if _, err := f.s.SetState(ctx, as(person), seal.Id, hufuv1.SealState_SEAL_STATE_DISABLED); err != nil {
		t.Fatal(err)
	}
	head, _ := f.st.Head()
	var actions []string
	for seq := uint64(1); seq <= head; seq++ {
		r, err := f.st.AuditRecord(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, r.Action)
		for k, v := range r.Details {
			if strings.Contains(v, seal.Name) || strings.Contains(r.Subject, seal.Name) {
				t.Fatalf("record %d names the seal in %s", seq, k)
			}
		}
		if r.Actor != "user:"+person || !strings.Contains(r.Subject, seal.Id) {
			t.Fatalf("record %d: %+v", seq, r)
		}
	}
	if strings.Join(actions, ",") != "seal.create,seal.state" {
		t.Fatalf("audit actions %v", actions)
	}
}

func TestSealLimit(t *testing.T) {
	f := newFixture(t)
	deps := f.s.deps
	deps.Registry = nil
	small, err := New(Options{MaxSealsPerOwner: 2}, deps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := small.Create(context.Background(), as(person), &hufuv1.CreateSealRequest{RequestId: "limit-000" + string(rune('a'+i)),
			Name: "章", Type: hufuv1.SealType_SEAL_TYPE_PERSONAL, Image: stampPNG(t, 8, 8)})
		if want := map[bool]string{true: "ok", false: "FailedPrecondition"}[i < 2]; kind(err) != want {
			t.Fatalf("seal %d: %v", i, err)
		}
	}
}

func TestRegisterPolicy(t *testing.T) {
	f := newFixture(t)
	policy := f.s.Register(grpcRegistrar{})
	if len(policy) != 6 {
		t.Fatalf("policy %v", policy)
	}
	for m, r := range policy {
		if r != authn.User || !strings.HasPrefix(m, "/hufu.v1.SealService/") {
			t.Fatalf("%s: %v", m, r)
		}
	}
}
