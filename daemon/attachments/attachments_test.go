package attachments

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

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

// signer is an in-memory audit checkpoint signer (the daemon's is HSM-resident).
type signer struct{ k *ecdsa.PrivateKey }

func (s signer) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s signer) PublicKey() *ecdsa.PublicKey { return &s.k.PublicKey }

func newService(t *testing.T, max int) (*Service, *store.Store, *clock) {
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
	s, err := New(Options{MaxBytes: max}, st)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, c
}

// update runs fn and audits it as the domain code calling this package would.
func update(st *store.Store, fn func(tx *store.Tx) error) error {
	return st.Update(context.Background(), func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "test.upload", Outcome: store.OutcomeOK})
	})
}

func pngBytes(t testing.TB) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.NRGBA{R: 0xc0, A: 0xff})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 4, 4)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var pdfBytes = []byte("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var e *apierr.Error
	if !errors.As(err, &e) || e.Kind != apierr.InvalidArgument || e.Field != field {
		t.Fatalf("want InvalidArgument on %q, got %v", field, err)
	}
}

func TestPutDetectsAndStores(t *testing.T) {
	s, st, _ := newService(t, 0)
	cases := []struct {
		name, file string
		content    []byte
		want       string
	}{
		{"png", "licence.png", pngBytes(t), PNG},
		{"jpeg", "licence.JPG", jpegBytes(t), JPEG},
		{"pdf", "letter.pdf", pdfBytes, PDF},
		{"no extension", "scan", pngBytes(t), PNG},
		{"extension naming no type", "scan.dat", pdfBytes, PDF},
		{"no file name", "", jpegBytes(t), JPEG},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ref *storepb.AttachmentRef
			err := update(st, func(tx *store.Tx) (err error) {
				ref, err = s.Put(tx, "enterprise.licence", c.content, c.file)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if ref.Id != sum(c.content) || ref.MediaType != c.want || ref.Size != int64(len(c.content)) || ref.FileName != c.file ||
				ref.Field != "enterprise.licence" {
				t.Fatalf("ref %v", ref)
			}
			b, err := s.Get(context.Background(), ref.Id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Content, c.content) || b.MediaType != c.want || b.Sha256 != ref.Id {
				t.Fatalf("stored %s %s, %d bytes", b.Sha256, b.MediaType, len(b.Content))
			}
		})
	}
}

func TestPutRefuses(t *testing.T) {
	const max = 1024
	s, st, _ := newService(t, max)
	png := pngBytes(t)
	big := append(append([]byte{}, pdfBytes...), bytes.Repeat([]byte{' '}, max-len(pdfBytes)+1)...)
	cases := []struct {
		name, file, claimed string
		content             []byte
	}{
		{"empty", "a.png", "", nil},
		{"one byte over the limit", "a.pdf", "", big},
		{"gif", "a.gif", "", []byte("GIF89a\x01\x00\x01\x00")},
		{"text", "a.txt", "", []byte("hello")},
		{"pdf without its dash", "a.pdf", "", []byte("%PDF1.7")},
		{"pdf after leading white space", "a.pdf", "", append([]byte("\n"), pdfBytes...)},
		{"truncated png signature", "a.png", "", png[:7]},
		{"html", "a.html", "", []byte("<html><body>x</body></html>")},
		{"png named .jpg", "a.jpg", "", png},
		{"png named .pdf", "a.pdf", "", png},
		{"png named .gif", "licence.gif", "", png},
		{"png named .docx", "licence.docx", "", png},
		{"png claimed jpeg", "a", "image/jpeg", png},
		{"png claimed pdf", "", "application/pdf", png},
		{"unparsable claim", "", "image/", png},
		{"control character in the name", "a\x00.png", "", png},
		{"name too long", strings.Repeat("长", 125) + ".png", "", png},
		{"name not UTF-8", "a\xff.png", "", png},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := update(st, func(tx *store.Tx) error {
				_, err := s.PutClaimed(tx, "letter.scan", c.content, c.file, c.claimed)
				return err
			})
			wantInvalid(t, err, "letter.scan")
		})
	}
	// Exactly the limit is accepted.
	if err := update(st, func(tx *store.Tx) error {
		_, err := s.Put(tx, "letter.scan", big[:max], "a.pdf")
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPutClaimedAccepts(t *testing.T) {
	s, _, _ := newService(t, 0)
	for _, c := range []struct {
		claimed string
		content []byte
	}{
		{"image/png", pngBytes(t)},
		{"IMAGE/PNG", pngBytes(t)},
		{"image/jpeg", jpegBytes(t)},
		{"image/jpg", jpegBytes(t)},
		{"application/pdf; charset=binary", pdfBytes},
	} {
		if _, err := s.Check("f", c.content, "", c.claimed); err != nil {
			t.Errorf("%s: %v", c.claimed, err)
		}
	}
}

func TestFileNames(t *testing.T) {
	for in, want := range map[string]string{
		`C:\Users\张三\Desktop\营业执照.png`: "营业执照.png",
		"../../etc/passwd.png":         "passwd.png",
		"/":                            "",
		"..":                           "",
		"a b.png":                      "a b.png",
	} {
		got, err := cleanFileName(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSecondPutIsANoOp(t *testing.T) {
	s, st, clk := newService(t, 0)
	content := pngBytes(t)
	var first, second *storepb.AttachmentRef
	if err := update(st, func(tx *store.Tx) (err error) { first, err = s.Put(tx, "a", content, "one.png"); return err }); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	head, _ := st.Head()
	// A transaction that only re-puts the same bytes writes nothing, so needs no audit.
	if err := st.Update(context.Background(), func(tx *store.Tx) (err error) {
		second, err = s.Put(tx, "b", content, "two.png")
		return err
	}); err != nil {
		t.Fatalf("a second Put wrote something: %v", err)
	}
	if again, _ := st.Head(); again != head {
		t.Fatalf("the audit log moved: %d -> %d", head, again)
	}
	if second.Id != first.Id || second.FileName != "two.png" || second.Field != "b" {
		t.Fatalf("second ref %v", second)
	}
	b, err := s.Get(context.Background(), first.Id)
	if err != nil {
		t.Fatal(err)
	}
	if b.CreatedUnixNano != clk.Now().Add(-time.Hour).UnixNano() {
		t.Fatal("the blob was rewritten")
	}
}

func TestConcurrentPutsStoreOnce(t *testing.T) {
	s, st, _ := newService(t, 0)
	content := pngBytes(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- update(st, func(tx *store.Tx) error {
				_, err := s.Store(tx, "order/"+string(rune('a'+i)), "f", content, "x.png")
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 8 {
		refs, err := s.List(context.Background(), "order/"+string(rune('a'+i)))
		if err != nil || len(refs) != 1 || refs[0].Id != sum(content) {
			t.Fatalf("order %d: %v %v", i, refs, err)
		}
	}
}

func TestLinkAndList(t *testing.T) {
	s, st, clk := newService(t, 0)
	a, b, c := pngBytes(t), jpegBytes(t), pdfBytes
	err := update(st, func(tx *store.Tx) error {
		for _, x := range []struct {
			app, file string
			content   []byte
		}{{"order/1", "licence.png", a}, {"order/1", "letter.jpg", b}, {"order/10", "letter.pdf", c}, {"order/1/x", "other.pdf", c}} {
			if _, err := s.Store(tx, x.app, "f", x.content, x.file); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	refs, err := s.List(context.Background(), "order/1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range refs {
		got[r.Id] = r.FileName
		if r.LinkedUnixNano != clk.Now().UnixNano() {
			t.Errorf("%s linked at %d", r.FileName, r.LinkedUnixNano)
		}
	}
	if len(got) != 2 || got[sum(a)] != "licence.png" || got[sum(b)] != "letter.jpg" {
		t.Fatalf("order/1 lists %v (not order/10's nor order/1/x's)", got)
	}
	if refs, _ := s.List(context.Background(), "order/2"); len(refs) != 0 {
		t.Fatalf("an application without attachments lists %v", refs)
	}
	// Relinking replaces the link.
	if err := update(st, func(tx *store.Tx) error {
		return s.Link(tx, "order/1", &storepb.AttachmentRef{Id: sum(a), FileName: "营业执照.png", Field: "g"})
	}); err != nil {
		t.Fatal(err)
	}
	refs, _ = s.List(context.Background(), "order/1")
	if len(refs) != 2 {
		t.Fatalf("relinking added a link: %v", refs)
	}
	for _, r := range refs {
		if r.Id == sum(a) && (r.FileName != "营业执照.png" || r.MediaType != PNG || r.Size != int64(len(a))) {
			t.Fatalf("relinked %v", r)
		}
	}
}

func TestLinkRefuses(t *testing.T) {
	s, st, _ := newService(t, 0)
	for name, x := range map[string]struct {
		app string
		ref *storepb.AttachmentRef
	}{
		"content never stored": {"order/1", &storepb.AttachmentRef{Id: sum([]byte("nothing"))}},
		"malformed id":         {"order/1", &storepb.AttachmentRef{Id: "../x"}},
		"empty application":    {"", &storepb.AttachmentRef{Id: sum(pdfBytes)}},
		"bad application part": {"order//1", &storepb.AttachmentRef{Id: sum(pdfBytes)}},
	} {
		if err := update(st, func(tx *store.Tx) error { return s.Link(tx, x.app, x.ref) }); err == nil {
			t.Errorf("%s: linked", name)
		}
	}
}

func TestGetUnknown(t *testing.T) {
	s, _, _ := newService(t, 0)
	for _, id := range []string{sum([]byte("x")), "nope", strings.ToUpper(sum([]byte("x"))), ""} {
		var e *apierr.Error
		if _, err := s.Get(context.Background(), id); !errors.As(err, &e) || e.Kind != apierr.NotFound {
			t.Errorf("%q: %v", id, err)
		}
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{}, nil); err == nil {
		t.Error("no store accepted")
	}
	s, _, _ := newService(t, 0)
	if s.max != DefaultMaxBytes {
		t.Errorf("default limit %d", s.max)
	}
}
