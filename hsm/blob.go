package hsm

import (
	"fmt"
)

// The blob format is documented in the package comment.
const (
	blobMagic0, blobMagic1 = 'h', 'W'
	// BlobVersion is the format version Wrap writes.
	BlobVersion = 1
	// NonceSize is the GCM nonce length: 96 bits, the size GCM is defined for.
	NonceSize = 12
	// TagSize is the GCM tag length.
	TagSize        = 16
	maxLabelLen    = 255
	blobHeaderBase = 4 // magic, version, label length
)

// Blob is a parsed wrapped blob. Its slices alias the input to ParseBlob.
type Blob struct {
	Version    byte
	KEKLabel   string
	Nonce      []byte
	Ciphertext []byte // ciphertext followed by the tag
	header     []byte // bytes [0, 4+len(label)): the part bound into the GCM additional data
}

// ParseBlob decodes a blob without any HSM call, so callers can find out which KEK wrapped
// it (for rotation) before unwrapping. It checks the structure only; authenticity is
// checked by Unwrap.
func ParseBlob(b []byte) (Blob, error) {
	if len(b) < blobHeaderBase {
		return Blob{}, fmt.Errorf("hsm: %d-byte blob: %w", len(b), ErrMalformedBlob)
	}
	if b[0] != blobMagic0 || b[1] != blobMagic1 {
		return Blob{}, fmt.Errorf("hsm: bad blob magic: %w", ErrMalformedBlob)
	}
	if b[2] != BlobVersion {
		return Blob{}, fmt.Errorf("hsm: blob format version %d: %w", b[2], ErrUnsupportedVersion)
	}
	n := int(b[3])
	if n == 0 {
		return Blob{}, fmt.Errorf("hsm: blob has an empty KEK label: %w", ErrMalformedBlob)
	}
	hdr := blobHeaderBase + n
	if len(b) < hdr+NonceSize+TagSize {
		return Blob{}, fmt.Errorf("hsm: %d-byte blob is truncated: %w", len(b), ErrMalformedBlob)
	}
	return Blob{
		Version:    b[2],
		KEKLabel:   string(b[blobHeaderBase:hdr]),
		Nonce:      b[hdr : hdr+NonceSize],
		Ciphertext: b[hdr+NonceSize:],
		header:     b[:hdr],
	}, nil
}

// appendBlobHeader appends magic, version and the length-prefixed label.
func appendBlobHeader(dst []byte, label string) []byte {
	dst = append(dst, blobMagic0, blobMagic1, BlobVersion, byte(len(label)))
	return append(dst, label...)
}

// gcmAAD is the GCM additional data: the blob header (self-delimiting, so the
// concatenation is unambiguous) followed by the caller's associated data.
func gcmAAD(header, ad []byte) []byte {
	aad := make([]byte, 0, len(header)+len(ad))
	aad = append(aad, header...)
	return append(aad, ad...)
}
