package seals

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// Limits of a seal image.
const (
	MaxImageBytes = 256 << 10
	MaxImageSide  = 1024
)

const pngSignature = "\x89PNG\r\n\x1a\n"

// Image is a checked seal image.
type Image struct {
	// PNG is the image as hufu re-encoded it: IHDR, PLTE/tRNS, IDAT and IEND only, so text,
	// EXIF, time and other metadata chunks of the upload are gone.
	PNG           []byte
	Width, Height int
}

// CheckImage checks an uploaded seal image and re-encodes it: a PNG (by its signature; a
// JPEG or anything else is refused), at most MaxImageBytes, at most MaxImageSide pixels
// each way (read from the header before any pixel is decoded), decodable by image/png,
// and with at least one pixel that is not fully opaque — a seal is stamped over a
// document, so its background must be transparent. Errors are InvalidArgument on
// "image".
func CheckImage(b []byte) (*Image, error) {
	switch {
	case len(b) == 0:
		return nil, apierr.Invalidf("image", "the image is empty")
	case len(b) > MaxImageBytes:
		return nil, apierr.Invalidf("image", "the image is larger than %d KiB", MaxImageBytes>>10)
	case !bytes.HasPrefix(b, []byte(pngSignature)):
		return nil, apierr.Invalidf("image", "the image must be a PNG (with a transparent background)")
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, apierr.Invalidf("image", "the PNG cannot be decoded: %s", pngError(err))
	}
	if cfg.Width > MaxImageSide || cfg.Height > MaxImageSide {
		return nil, apierr.Invalidf("image", "the image is %d×%d pixels; at most %d×%d", cfg.Width, cfg.Height, MaxImageSide, MaxImageSide)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, apierr.Invalidf("image", "the PNG cannot be decoded: %s", pngError(err))
	}
	if o, ok := img.(interface{ Opaque() bool }); !ok || o.Opaque() {
		return nil, apierr.Invalidf("image", "the image has no transparent pixels; a seal image needs a transparent background")
	}
	var out bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&out, img); err != nil {
		return nil, fmt.Errorf("seals: re-encode the image: %w", err)
	}
	r := img.Bounds()
	return &Image{PNG: out.Bytes(), Width: r.Dx(), Height: r.Dy()}, nil
}

// pngError keeps the decoder's reason (no bytes of the input are in it).
func pngError(err error) string {
	var fe png.FormatError
	var ue png.UnsupportedError
	switch {
	case errors.As(err, &fe), errors.As(err, &ue):
		return err.Error()
	case errors.Is(err, image.ErrFormat):
		return "not a PNG"
	}
	return "truncated or corrupt"
}
