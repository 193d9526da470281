// Package backup is the on-disk format of hufu's backups: the store's Pebble
// checkpoint as a tar archive of store/<file> entries, encrypted under a fresh data key
// that is wrapped under the HSM's current key-encryption key. A backup holds every phone
// number and sealed ID number of the appliance; encrypted, it is useless without the HSM
// token it was taken on.
//
// # Format (version 1)
//
// Every multi-byte integer is big-endian.
//
//	offset  size  field
//	0       8     magic "HUFUBAK\n"
//	8       1     format version, 1
//	9       1     cipher suite, 1 = AES-256-GCM in chunks (below)
//	10      4     chunk size C in bytes, 4096..4 MiB, a multiple of 512; the writer uses 64 KiB
//	14      8     creation time, Unix seconds
//	22      1     n, length of the backup's name (1..200)
//	23      n     the backup's name (hufu-backup-<time>-<id>), printable ASCII
//	23+n    7     nonce prefix, random
//	30+n    2     m, length of the wrapped data key (1..1024)
//	32+n    m     the data key (32 bytes) wrapped by the HSM keyring (hsm blob format: it
//	              names its KEK, e.g. "hufu-kek-v3"), with associated data
//	              "hufu/backup/v1 data-key" followed by bytes [0, 30+n) of the header
//	32+n+m  rest  the chunks
//
// The plaintext (the tar archive) is cut into chunks of C bytes; the last chunk holds 0..C-1
// bytes, so that it is always shorter than the others (a plaintext of k·C bytes ends with an
// empty chunk). Chunk i (from 0) is sealed with AES-256-GCM under the data key, nonce =
// nonce prefix ‖ i as 4 bytes ‖ 1 byte (1 for the last chunk, else 0), additional data =
// SHA-256 of the whole header; it is stored as its ciphertext followed by the 16-byte tag,
// nothing else. A reader therefore knows a chunk is the last one by its length, and the
// nonce proves it: an archive cut at a chunk boundary lacks its short last chunk
// (ErrTruncated); one cut inside a chunk, reordered or altered fails authentication
// (ErrTampered); a changed header changes every chunk's additional data and the wrapped
// key's.
//
// # Restorability and KEK rotation
//
// The data key is wrapped under the KEK that was current when the backup was taken, and the
// store inside holds key shares wrapped under that KEK too; restoring needs the same HSM
// token (or a copy of it) with that KEK still on it. Finishing a KEK rotation destroys the
// old KEKs, after which older backups cannot be opened (restore names the KEK it needs:
// ErrUnknownKEK from the keyring): back up the HSM token before a rotation and take a new
// backup right after its finish. Header reads the KEK label without the HSM.
package backup

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Format constants.
const (
	Magic   = "HUFUBAK\n"
	Version = 1
	// SuiteAES256GCMChunked is the only cipher suite of version 1.
	SuiteAES256GCMChunked = 1
	// DefaultChunkSize is the chunk size the writer uses.
	DefaultChunkSize = 64 << 10
	minChunkSize     = 4 << 10
	maxChunkSize     = 4 << 20
	maxNameLen       = 200
	maxWrappedKeyLen = 1024
	noncePrefixSize  = 7
	dataKeySize      = 32
	tagSize          = 16
	fixedHeaderSize  = 8 + 1 + 1 + 4 + 8 + 1 // up to the name
)

// dataKeyAD prefixes the associated data of the wrapped data key.
const dataKeyAD = "hufu/backup/v1 data-key"

// Sentinel errors; errors of this package wrap one of them (or an I/O or keyring error).
var (
	// ErrNotBackup: the input does not start with the magic.
	ErrNotBackup = errors.New("not a hufu backup archive")
	// ErrUnsupportedVersion: a format version or cipher suite this build cannot read.
	ErrUnsupportedVersion = errors.New("unsupported backup format version")
	// ErrMalformed: the header breaks the format (a length or field out of range).
	ErrMalformed = errors.New("malformed backup header")
	// ErrTruncated: the archive ends before its header or its last chunk.
	ErrTruncated = errors.New("backup archive is truncated")
	// ErrTampered: a chunk failed authentication: the archive was altered, reordered, cut
	// inside a chunk, or its header changed.
	ErrTampered = errors.New("backup archive failed authentication")
	// ErrTrailingData: bytes follow the last chunk.
	ErrTrailingData = errors.New("data after the end of the backup archive")
	// ErrUnsafeEntry: the tar archive inside holds something restore refuses (a link, a
	// device, a path outside store/, no Pebble manifest).
	ErrUnsafeEntry = errors.New("backup archive holds an entry restore refuses")
)

// KeyWrapper wraps and unwraps the data key: the HSM keyring (*hsm.Keyring).
type KeyWrapper interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error)
}

// Header is a decoded archive header.
type Header struct {
	Version     int
	ChunkSize   int
	Created     time.Time
	Name        string
	NoncePrefix [noncePrefixSize]byte
	WrappedKey  []byte
	// KEK is the label of the KEK that wrapped the data key (read from WrappedKey).
	KEK string

	raw []byte // the encoded header, for the chunks' additional data
}

// DecodeHeader reads and checks the header at the start of r, reading nothing past it.
// It needs no key: it is what an operator's tool uses to tell which KEK a backup needs.
func DecodeHeader(r io.Reader) (*Header, error) {
	fixed := make([]byte, fixedHeaderSize)
	if _, err := io.ReadFull(r, fixed[:len(Magic)]); err != nil {
		return nil, short(err, "the magic")
	}
	if string(fixed[:len(Magic)]) != Magic {
		return nil, ErrNotBackup
	}
	if _, err := io.ReadFull(r, fixed[len(Magic):]); err != nil {
		return nil, short(err, "the header")
	}
	h := &Header{Version: int(fixed[8])}
	if h.Version != Version {
		return nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrUnsupportedVersion, h.Version, Version)
	}
	if fixed[9] != SuiteAES256GCMChunked {
		return nil, fmt.Errorf("%w: cipher suite %d", ErrUnsupportedVersion, fixed[9])
	}
	h.ChunkSize = int(binary.BigEndian.Uint32(fixed[10:14]))
	if h.ChunkSize < minChunkSize || h.ChunkSize > maxChunkSize || h.ChunkSize%512 != 0 {
		return nil, fmt.Errorf("%w: chunk size %d", ErrMalformed, h.ChunkSize)
	}
	secs := int64(binary.BigEndian.Uint64(fixed[14:22]))
	if secs < 0 || secs > 1<<40 {
		return nil, fmt.Errorf("%w: creation time %d", ErrMalformed, secs)
	}
	h.Created = time.Unix(secs, 0).UTC()
	n := int(fixed[22])
	if n == 0 || n > maxNameLen {
		return nil, fmt.Errorf("%w: name length %d", ErrMalformed, n)
	}
	rest := make([]byte, n+noncePrefixSize+2)
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, short(err, "the header")
	}
	name := rest[:n]
	for _, c := range name {
		if c < 0x21 || c > 0x7e {
			return nil, fmt.Errorf("%w: name is not printable ASCII", ErrMalformed)
		}
	}
	h.Name = string(name)
	copy(h.NoncePrefix[:], rest[n:n+noncePrefixSize])
	m := int(binary.BigEndian.Uint16(rest[n+noncePrefixSize:]))
	if m == 0 || m > maxWrappedKeyLen {
		return nil, fmt.Errorf("%w: wrapped key length %d", ErrMalformed, m)
	}
	h.WrappedKey = make([]byte, m)
	if _, err := io.ReadFull(r, h.WrappedKey); err != nil {
		return nil, short(err, "the wrapped data key")
	}
	var err error
	if h.KEK, err = blobKEK(h.WrappedKey); err != nil {
		return nil, fmt.Errorf("%w: wrapped data key: %w", ErrMalformed, err)
	}
	h.raw = slicesConcat(fixed, rest, h.WrappedKey)
	return h, nil
}

// blobKEK reads the KEK label from a blob in the hsm package's blob format (version 1:
// "hW", version, label length, label, nonce, ciphertext and tag; see package hsm). It is
// read here rather than with hsm.ParseBlob so that tools reading backup headers (hufu admin
// backup) need not link the PKCS#11 libraries; the keyring parses the whole blob again when
// it unwraps.
func blobKEK(blob []byte) (string, error) {
	if len(blob) < 4 || blob[0] != 'h' || blob[1] != 'W' {
		return "", errors.New("not an HSM blob")
	}
	if blob[2] != 1 {
		return "", fmt.Errorf("HSM blob format version %d", blob[2])
	}
	n := int(blob[3])
	if n == 0 || len(blob) < 4+n+12+16 {
		return "", errors.New("HSM blob too short")
	}
	label := blob[4 : 4+n]
	for _, c := range label {
		if c < 0x21 || c > 0x7e {
			return "", errors.New("HSM blob's KEK label is not printable")
		}
	}
	return string(label), nil
}

func short(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: it ends inside %s", ErrTruncated, what)
	}
	return err
}

func slicesConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// keyAD is the wrapped key's associated data: the header up to the wrapped key's length.
func keyAD(headerPrefix []byte) []byte {
	return append([]byte(dataKeyAD), headerPrefix...)
}

// Writer encrypts a backup as it is written. Close writes the last chunk; without it the
// archive is truncated (and restore says so).
type Writer struct {
	w      io.Writer
	aead   cipher.AEAD
	prefix [noncePrefixSize]byte
	ad     [sha256.Size]byte
	buf    []byte
	chunk  int
	index  uint32
	closed bool
	err    error
}

// NewWriter writes the header of a new backup called name to w, with a fresh data key
// wrapped by keys, and returns the writer for its content.
func NewWriter(ctx context.Context, w io.Writer, keys KeyWrapper, name string, created time.Time) (*Writer, error) {
	if len(name) == 0 || len(name) > maxNameLen || bytes.ContainsFunc([]byte(name), func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, fmt.Errorf("backup: name %q: want 1..%d printable ASCII characters", name, maxNameLen)
	}
	dataKey := make([]byte, dataKeySize)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, err
	}
	defer clear(dataKey)
	hdr := make([]byte, 0, 64+len(name))
	hdr = append(hdr, Magic...)
	hdr = append(hdr, Version, SuiteAES256GCMChunked)
	hdr = binary.BigEndian.AppendUint32(hdr, DefaultChunkSize)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(created.Unix()))
	hdr = append(hdr, byte(len(name)))
	hdr = append(hdr, name...)
	bw := &Writer{w: w, chunk: DefaultChunkSize}
	if _, err := rand.Read(bw.prefix[:]); err != nil {
		return nil, err
	}
	hdr = append(hdr, bw.prefix[:]...)
	wrapped, err := keys.Wrap(ctx, dataKey, keyAD(hdr))
	if err != nil {
		return nil, fmt.Errorf("backup: wrapping the data key: %w", err)
	}
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(wrapped)))
	hdr = append(hdr, wrapped...)
	if bw.aead, err = newAEAD(dataKey); err != nil {
		return nil, err
	}
	bw.ad = sha256.Sum256(hdr)
	bw.buf = make([]byte, 0, DefaultChunkSize)
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return bw, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func chunkNonce(prefix [noncePrefixSize]byte, i uint32, last bool) []byte {
	n := make([]byte, 12)
	copy(n, prefix[:])
	binary.BigEndian.PutUint32(n[noncePrefixSize:], i)
	if last {
		n[11] = 1
	}
	return n
}

// Write buffers p and writes every full chunk that is known not to be the last.
func (bw *Writer) Write(p []byte) (int, error) {
	if bw.err != nil {
		return 0, bw.err
	}
	if bw.closed {
		return 0, errors.New("backup: write after close")
	}
	n := 0
	for len(p) > 0 {
		if len(bw.buf) == bw.chunk {
			// A full buffer and more to come: it is not the last chunk.
			if err := bw.seal(false); err != nil {
				return n, err
			}
		}
		k := min(len(p), bw.chunk-len(bw.buf))
		bw.buf = append(bw.buf, p[:k]...)
		p, n = p[k:], n+k
	}
	return n, nil
}

func (bw *Writer) seal(last bool) error {
	if bw.index == ^uint32(0) {
		bw.err = errors.New("backup: too many chunks")
		return bw.err
	}
	out := bw.aead.Seal(nil, chunkNonce(bw.prefix, bw.index, last), bw.buf, bw.ad[:])
	bw.index++
	bw.buf = bw.buf[:0]
	if _, err := bw.w.Write(out); err != nil {
		bw.err = err
		return err
	}
	return nil
}

// Close writes the remaining chunks: a full buffer as an ordinary chunk, then the last,
// short (possibly empty) chunk. It does not close the underlying writer.
func (bw *Writer) Close() error {
	if bw.err != nil {
		return bw.err
	}
	if bw.closed {
		return nil
	}
	bw.closed = true
	if len(bw.buf) == bw.chunk {
		if err := bw.seal(false); err != nil {
			return err
		}
	}
	return bw.seal(true)
}

// Reader decrypts a backup as it is read. Read returns only authenticated plaintext, and
// io.EOF only after the last chunk authenticated and nothing follows it.
type Reader struct {
	Header *Header
	r      io.Reader
	aead   cipher.AEAD
	ad     [sha256.Size]byte
	chunk  []byte // ciphertext buffer: chunk size + tag + 1 byte to look ahead
	plain  []byte
	index  uint32
	done   bool
	err    error
}

// NewReader reads the header from r and unwraps the data key with keys.
func NewReader(ctx context.Context, r io.Reader, keys KeyWrapper) (*Reader, error) {
	h, err := DecodeHeader(r)
	if err != nil {
		return nil, err
	}
	prefixLen := len(h.raw) - 2 - len(h.WrappedKey)
	dataKey, err := keys.Unwrap(ctx, h.WrappedKey, keyAD(h.raw[:prefixLen]))
	if err != nil {
		// Most often the KEK is gone: a KEK erasure or a rotation's finish after the backup
		// destroys it, and that is the point, not damage. The keyring's error says which.
		return nil, fmt.Errorf("backup: the data key of backup %s is wrapped under %s and cannot be unwrapped (a KEK erasure or rotation finish after the backup destroys that KEK; backups taken before it cannot be restored): %w",
			h.Name, h.KEK, err)
	}
	defer clear(dataKey)
	if len(dataKey) != dataKeySize {
		return nil, fmt.Errorf("%w: data key of %d bytes", ErrMalformed, len(dataKey))
	}
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	return &Reader{Header: h, r: r, aead: aead, ad: sha256.Sum256(h.raw), chunk: make([]byte, 0, h.ChunkSize+tagSize+1)}, nil
}

// Read returns decrypted, authenticated bytes.
func (br *Reader) Read(p []byte) (int, error) {
	for len(br.plain) == 0 {
		if br.err != nil {
			return 0, br.err
		}
		if br.done {
			br.err = io.EOF
			return 0, io.EOF
		}
		br.err = br.next()
	}
	n := copy(p, br.plain)
	br.plain = br.plain[n:]
	return n, nil
}

// next reads and opens one chunk. A chunk of full length followed by at least one more
// byte is not the last; a shorter one is the last and must be followed by nothing.
func (br *Reader) next() error {
	full := br.Header.ChunkSize + tagSize
	// br.chunk may hold the byte looked ahead at the previous chunk.
	have := len(br.chunk)
	br.chunk = br.chunk[:full+1]
	n, err := io.ReadFull(br.r, br.chunk[have:])
	br.chunk = br.chunk[:have+n]
	switch {
	case err == nil:
		// full+1 bytes: a full chunk, not the last.
		pt, oerr := br.aead.Open(nil, chunkNonce(br.Header.NoncePrefix, br.index, false), br.chunk[:full], br.ad[:])
		if oerr != nil {
			return fmt.Errorf("%w: chunk %d", ErrTampered, br.index)
		}
		br.plain = pt
		br.index++
		br.chunk = append(br.chunk[:0], br.chunk[full])
		return nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return err
	}
	switch got := len(br.chunk); {
	case got == 0 && br.index == 0:
		return fmt.Errorf("%w: it ends right after its header", ErrTruncated)
	case got == 0:
		return fmt.Errorf("%w: it ends after chunk %d without its last chunk", ErrTruncated, br.index-1)
	case got == full:
		return fmt.Errorf("%w: it ends after a full chunk (%d), without its short last chunk", ErrTruncated, br.index)
	case got < tagSize:
		return fmt.Errorf("%w: it ends inside chunk %d", ErrTruncated, br.index)
	}
	pt, oerr := br.aead.Open(nil, chunkNonce(br.Header.NoncePrefix, br.index, true), br.chunk, br.ad[:])
	if oerr != nil {
		return fmt.Errorf("%w: the last chunk (%d) does not authenticate: altered, or cut inside a chunk", ErrTampered, br.index)
	}
	br.plain = pt
	br.done = true
	return nil
}

// CheckFraming reads a whole archive without a key and checks what can be checked so: the
// header, and that the chunks end with a short last chunk (an archive cut at a chunk
// boundary fails with ErrTruncated). It returns the header and the archive's size.
// Authentication needs the HSM: restore does it.
func CheckFraming(r io.Reader) (*Header, int64, error) {
	cr := &countingReader{r: r}
	h, err := DecodeHeader(cr)
	if err != nil {
		return nil, cr.n, err
	}
	full := int64(h.ChunkSize + tagSize)
	body, err := io.Copy(io.Discard, cr)
	if err != nil {
		return h, cr.n, err
	}
	last := body % full
	if last < tagSize {
		return h, cr.n, fmt.Errorf("%w: the chunks do not end with a short last chunk", ErrTruncated)
	}
	return h, cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
