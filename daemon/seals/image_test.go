package seals

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// stampPNG is a w×h red ring-ish stamp on a transparent background, as a phone would send.
func stampPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		img.Set(x, h/2, color.NRGBA{R: 0xd0, A: 0xff})
	}
	return encodePNG(t, img)
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withChunk inserts a chunk after IHDR (the 8-byte signature and the 25-byte IHDR chunk).
func withChunk(t testing.TB, p []byte, typ string, data []byte) []byte {
	t.Helper()
	var c bytes.Buffer
	_ = binary.Write(&c, binary.BigEndian, uint32(len(data)))
	c.WriteString(typ)
	c.Write(data)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	_ = binary.Write(&c, binary.BigEndian, crc.Sum32())
	out := append([]byte{}, p[:33]...)
	out = append(out, c.Bytes()...)
	return append(out, p[33:]...)
}

// chunks lists the chunk types of a PNG.
func chunks(t testing.TB, p []byte) []string {
	t.Helper()
	var out []string
	for p = p[8:]; len(p) >= 12; {
		n := binary.BigEndian.Uint32(p)
		out = append(out, string(p[4:8]))
		p = p[12+n:]
	}
	return out
}

func TestCheckImage(t *testing.T) {
	opaque := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := range opaque.Pix {
		opaque.Pix[i] = 0xff
	}
	rgb := image.NewRGBA(image.Rect(0, 0, 8, 8)) // encoded as RGB without alpha
	for i := range rgb.Pix {
		rgb.Pix[i] = 0xff
	}
	paletted := image.NewPaletted(image.Rect(0, 0, 8, 8), color.Palette{color.NRGBA{}, color.NRGBA{R: 0xff, A: 0xff}})
	paletted.SetColorIndex(3, 3, 1)
	noise := image.NewNRGBA(image.Rect(0, 0, 400, 400))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise.Pix {
		noise.Pix[i] = byte(r.Uint32())
	}
	var jpg, gf bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	if err := gif.Encode(&gf, paletted, nil); err != nil {
		t.Fatal(err)
	}
	stamp := stampPNG(t, 64, 64)
	secret := []byte("Author\x00张三 13800138000")

	cases := []struct {
		name string
		in   []byte
		ok   bool
		w, h int
	}{
		{"transparent stamp", stamp, true, 64, 64},
		{"palette with a transparent entry", encodePNG(t, paletted), true, 8, 8},
		{"tEXt metadata is stripped", withChunk(t, stamp, "tEXt", secret), true, 64, 64},
		{"largest size", stampPNG(t, MaxImageSide, MaxImageSide), true, MaxImageSide, MaxImageSide},
		{"no transparent pixel", encodePNG(t, opaque), false, 0, 0},
		{"no alpha channel", encodePNG(t, rgb), false, 0, 0},
		{"jpeg", jpg.Bytes(), false, 0, 0},
		{"gif", gf.Bytes(), false, 0, 0},
		{"larger than 256 KiB", encodePNG(t, noise), false, 0, 0},
		{"too wide", stampPNG(t, MaxImageSide+1, 1), false, 0, 0},
		{"too tall", stampPNG(t, 1, MaxImageSide+1), false, 0, 0},
		{"truncated", stamp[:len(stamp)/2], false, 0, 0},
		{"signature only", stamp[:8], false, 0, 0},
		{"bad chunk checksum", append(append([]byte{}, stamp[:29]...), append([]byte{^stamp[29]}, stamp[30:]...)...), false, 0, 0},
		{"empty", nil, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := CheckImage(c.in)
			if !c.ok {
				var e *apierr.Error
				if !errors.As(err, &e) || e.Kind != apierr.InvalidArgument || e.Field != "image" {
					t.Fatalf("want InvalidArgument on image, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Width != c.w || img.Height != c.h {
				t.Fatalf("%d×%d", img.Width, img.Height)
			}
			for _, ch := range chunks(t, img.PNG) {
				switch ch {
				case "IHDR", "PLTE", "tRNS", "IDAT", "IEND":
				default:
					t.Fatalf("chunk %s kept", ch)
				}
			}
			if bytes.Contains(img.PNG, []byte("Author")) || bytes.Contains(img.PNG, []byte("13800138000")) {
				t.Fatal("metadata survived the re-encoding")
			}
			dec, err := png.Decode(bytes.NewReader(img.PNG))
			if err != nil || dec.Bounds().Dx() != c.w {
				t.Fatalf("the re-encoded image does not decode: %v", err)
			}
			again, err := CheckImage(img.PNG)
			if err != nil || !bytes.Equal(again.PNG, img.PNG) {
				t.Fatalf("re-encoding is not stable: %v", err)
			}
		})
	}
}

func TestCheckImageMetadataFixture(t *testing.T) {
	// Sanity of the fixture itself: the secret is in the upload.
	p := withChunk(t, stampPNG(t, 4, 4), "tEXt", []byte("Author\x00x13800138000"))
	if !bytes.Contains(p, []byte("13800138000")) || chunks(t, p)[1] != "tEXt" {
		t.Fatal("fixture")
	}
	if _, err := png.Decode(bytes.NewReader(p)); err != nil {
		t.Fatalf("fixture does not decode: %v", err)
	}
}
