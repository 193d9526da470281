package seals

import (
	"bytes"
	"errors"
	"image/png"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// FuzzCheckImage: any upload is refused with InvalidArgument on "image" or accepted; what
// is accepted was a PNG within the limits, comes out as a PNG of the same size with only
// the chunks hufu writes, and checking that output again gives it back unchanged. Seeds
// are in testdata/fuzz/FuzzCheckImage (a transparent stamp, a palette image, one with a
// tEXt chunk, an opaque one, a JPEG, truncated and corrupted PNGs).
func FuzzCheckImage(f *testing.F) {
	f.Add(stampPNG(f, 16, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := CheckImage(b)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Kind != apierr.InvalidArgument || e.Field != "image" {
				t.Fatalf("not InvalidArgument on image: %v", err)
			}
			return
		}
		if len(b) > MaxImageBytes || img.Width > MaxImageSide || img.Height > MaxImageSide {
			t.Fatalf("accepted %d bytes, %d×%d", len(b), img.Width, img.Height)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(img.PNG))
		if err != nil || cfg.Width != img.Width || cfg.Height != img.Height {
			t.Fatalf("output: %v", err)
		}
		for _, ch := range chunks(t, img.PNG) {
			switch ch {
			case "IHDR", "PLTE", "tRNS", "IDAT", "IEND":
			default:
				t.Fatalf("chunk %s in the output", ch)
			}
		}
		if len(img.PNG) <= MaxImageBytes {
			again, err := CheckImage(img.PNG)
			if err != nil || !bytes.Equal(again.PNG, img.PNG) {
				t.Fatalf("not stable: %v", err)
			}
		}
	})
}
