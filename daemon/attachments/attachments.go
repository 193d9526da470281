// Package attachments stores the files an application carries — business licence images,
// stamped authorisation letters — content-addressed and checked.
//
// An attachment's id is the lower-case hex SHA-256 of its content. Its media type is
// detected from the content's magic bytes only (PNG, JPEG or PDF; see Detect); a type the
// client claims, by media type or by the file name's extension, must agree with it. Content
// is bounded (Options.MaxBytes, default 5 MiB) and stored once however many applications
// carry it: a second Put of the same bytes writes nothing and returns the same id.
// Applications refer to attachments by links, which carry what differs per upload (file
// name, request field, time).
//
// # Records
//
//	o/att/<sha256 hex>                      storepb.AttachmentBlob: the content
//	o/att-link/<application id>/<sha256>    storepb.AttachmentRef: the attachment as linked
//
// An application id is one or more key parts, e.g. "order/<order id>". Put, Link and Store
// write inside the caller's transaction and append no audit record of their own: the
// caller's record of the operation names the attachment by its id. Get and List answer
// anybody who asks: access control belongs to the domain that owns the application.
package attachments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/hufu-hsm/hufu/daemon/text"
	"mime"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Media types that can be stored.
const (
	PNG  = "image/png"
	JPEG = "image/jpeg"
	PDF  = "application/pdf"
)

// DefaultMaxBytes bounds an attachment unless Options say otherwise.
const DefaultMaxBytes = 5 << 20

// maxFileNameRunes bounds a stored file name.
const maxFileNameRunes = 128

// ErrUnknownType: the content is none of PNG, JPEG or PDF.
var ErrUnknownType = errors.New("only PNG, JPEG or PDF files are accepted (the type is read from the content)")

var magic = []struct {
	prefix, mediaType string
}{
	{"\x89PNG\r\n\x1a\n", PNG},
	{"\xff\xd8\xff", JPEG},
	{"%PDF-", PDF},
}

// Detect returns the media type of content from its first bytes: the 8-byte PNG
// signature, the JPEG start-of-image marker followed by a marker prefix (FF D8 FF), or the
// PDF header "%PDF-" at offset 0 (PDF readers tolerate leading junk; we do not). Anything
// else is ErrUnknownType.
func Detect(content []byte) (string, error) {
	for _, m := range magic {
		if strings.HasPrefix(string(content), m.prefix) {
			return m.mediaType, nil
		}
	}
	return "", ErrUnknownType
}

// Options configure the store of attachments.
type Options struct {
	// MaxBytes bounds one attachment; default DefaultMaxBytes.
	MaxBytes int
}

// Service stores and reads attachments.
type Service struct {
	st  *store.Store
	max int
}

// New returns the service over st.
func New(opts Options, st *store.Store) (*Service, error) {
	if st == nil {
		return nil, errors.New("attachments: missing store")
	}
	if opts.MaxBytes < 0 {
		return nil, errors.New("attachments: negative MaxBytes")
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	return &Service{st: st, max: opts.MaxBytes}, nil
}

var (
	blobs = store.NewCollection(store.KindOrder, func() *storepb.AttachmentBlob { return new(storepb.AttachmentBlob) })
	links = store.NewCollection(store.KindOrder, func() *storepb.AttachmentRef { return new(storepb.AttachmentRef) })
)

func blobID(id string) string              { return "att/" + id }
func linkPrefix(application string) string { return "att-link/" + application + "/" }

var idRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Put checks content and stores it inside tx unless the same bytes are stored already, and
// returns its reference (not yet linked to an application). field names the request field
// in errors; fileName is kept for display (base name only). A file name's extension that
// names a type (.png, .jpg, .pdf, but also .gif, .docx, ...) must name the detected one;
// no extension, or one that names no type, claims nothing.
func (s *Service) Put(tx *store.Tx, field string, content []byte, fileName string) (*storepb.AttachmentRef, error) {
	return s.PutClaimed(tx, field, content, fileName, "")
}

// PutClaimed is Put with the media type the client claims ("" for none), which must be
// the detected one (image/jpg is taken for image/jpeg; parameters are ignored).
func (s *Service) PutClaimed(tx *store.Tx, field string, content []byte, fileName, claimed string) (*storepb.AttachmentRef, error) {
	ref, err := s.Check(field, content, fileName, claimed)
	if err != nil {
		return nil, err
	}
	_, err = blobs.Get(tx, blobID(ref.Id))
	switch {
	case err == nil:
		return ref, nil // stored already: content-addressed, nothing to write
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("attachments: read %s: %w", ref.Id, err)
	}
	err = blobs.Put(tx, blobID(ref.Id), &storepb.AttachmentBlob{
		Sha256: ref.Id, MediaType: ref.MediaType, Size: ref.Size, Content: content, CreatedUnixNano: tx.Now().UnixNano(),
	})
	if err != nil {
		return nil, fmt.Errorf("attachments: store %s: %w", ref.Id, err)
	}
	return ref, nil
}

// Check validates an upload without storing it and returns the reference Put would.
func (s *Service) Check(field string, content []byte, fileName, claimed string) (*storepb.AttachmentRef, error) {
	switch {
	case len(content) == 0:
		return nil, apierr.Invalidf(field, "the file is empty")
	case len(content) > s.max:
		return nil, apierr.Invalidf(field, "the file is larger than %s", size(s.max))
	}
	detected, err := Detect(content)
	if err != nil {
		return nil, apierr.Invalid(field, err)
	}
	name, err := cleanFileName(fileName)
	if err != nil {
		return nil, apierr.Invalid(field, err)
	}
	if t := byExtension(name); t != "" && t != detected {
		return nil, apierr.Invalidf(field, "the content is %s, but the file name's extension says %s", label(detected), label(t))
	}
	if claimed != "" {
		t, _, err := mime.ParseMediaType(claimed)
		if t == "image/jpg" || t == "image/pjpeg" {
			t = JPEG
		}
		if err != nil || t != detected {
			return nil, apierr.Invalidf(field, "the content is %s, not the media type it was sent as", label(detected))
		}
	}
	h := sha256.Sum256(content)
	return &storepb.AttachmentRef{Id: hex.EncodeToString(h[:]), MediaType: detected, Size: int64(len(content)), FileName: name, Field: field}, nil
}

// Link records inside tx that application carries the attachment ref names; linking it
// again replaces the link (a new file name, field, time). The content must be stored.
func (s *Service) Link(tx *store.Tx, application string, ref *storepb.AttachmentRef) error {
	if err := checkApplication(application); err != nil {
		return err
	}
	id := ref.GetId()
	if !idRE.MatchString(id) {
		return fmt.Errorf("attachments: link to a malformed id")
	}
	b, err := blobs.Get(tx, blobID(id))
	if err != nil {
		return fmt.Errorf("attachments: link %s: %w", id, err)
	}
	name, err := cleanFileName(ref.GetFileName())
	if err != nil {
		return apierr.Invalid(ref.GetField(), err)
	}
	return links.Put(tx, linkPrefix(application)+id, &storepb.AttachmentRef{
		Id: id, MediaType: b.MediaType, Size: b.Size, FileName: name, Field: ref.GetField(), LinkedUnixNano: tx.Now().UnixNano(),
	})
}

// Store checks and stores content and links it to application, inside tx, and returns its
// id (the enterprise domain's view of this package).
func (s *Service) Store(tx *store.Tx, application, field string, content []byte, fileName string) (string, error) {
	ref, err := s.Put(tx, field, content, fileName)
	if err != nil {
		return "", err
	}
	if err := s.Link(tx, application, ref); err != nil {
		return "", err
	}
	return ref.Id, nil
}

// List returns the attachments linked to application, in id order.
func (s *Service) List(ctx context.Context, application string) ([]*storepb.AttachmentRef, error) {
	if err := checkApplication(application); err != nil {
		return nil, err
	}
	prefix := linkPrefix(application)
	var out []*storepb.AttachmentRef
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := links.List(ctx, s.st, prefix, opts, func(id string, _ *storepb.AttachmentRef) bool {
			// Only this application's links, not those of an application whose id extends
			// this one ("order/1" must not list "order/1/x/...").
			return idRE.MatchString(strings.TrimPrefix(id, prefix))
		})
		if err != nil {
			return nil, fmt.Errorf("attachments: list: %w", err)
		}
		for _, it := range page.Items {
			out = append(out, it.Value)
		}
		if page.Next == "" {
			return out, nil
		}
		opts.Cursor = page.Next
	}
}

// Get returns an attachment with its content; NotFound if there is none with that id.
func (s *Service) Get(ctx context.Context, id string) (*storepb.AttachmentBlob, error) {
	if !idRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no attachment %q", id)
	}
	b, err := blobs.Read(ctx, s.st, blobID(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no attachment %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("attachments: read %s: %w", id, err)
	}
	return b, nil
}

func checkApplication(application string) error {
	if application == "" {
		return fmt.Errorf("attachments: empty application id")
	}
	for _, p := range strings.Split(application, "/") {
		if err := store.ValidPart(p); err != nil {
			return fmt.Errorf("attachments: application id: %w", err)
		}
	}
	return nil
}

// cleanFileName keeps the base name of what a client sent (a path, perhaps a Windows one),
// and refuses control characters and overlong names.
func cleanFileName(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	if !utf8.ValidString(name) {
		return "", errors.New("the file name is not UTF-8")
	}
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	if name == "/" || name == "." || name == ".." {
		return "", nil
	}
	if utf8.RuneCountInString(name) > maxFileNameRunes {
		return "", fmt.Errorf("the file name is longer than %d characters", maxFileNameRunes)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError || text.Bidi(r) {
			return "", errors.New("the file name contains control or bidirectional-override characters")
		}
	}
	return name, nil
}

func byExtension(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".png":
		return PNG
	case ".jpg", ".jpeg", ".jpe", ".jfif":
		return JPEG
	case ".pdf":
		return PDF
	case ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".svg", ".ofd", ".doc", ".docx", ".txt", ".zip":
		// A type we do not store: whatever the content, the upload is not what it claims.
		return "application/x-" + strings.ToLower(path.Ext(name))[1:]
	}
	return ""
}

func label(mediaType string) string {
	switch mediaType {
	case PNG:
		return "a PNG image"
	case JPEG:
		return "a JPEG image"
	case PDF:
		return "a PDF document"
	}
	if ext, ok := strings.CutPrefix(mediaType, "application/x-"); ok {
		return "a ." + ext + " file"
	}
	return mediaType
}

func size(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
