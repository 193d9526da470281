package main

import (
	"fmt"
	"io"
	"strings"

	qrcode "github.com/yeqown/go-qrcode/v2"
)

// printQR draws text as a QR code with Unicode half blocks (two modules a character, dark
// on light, with a quiet zone), for a phone to scan from the terminal.
func printQR(w io.Writer, text string) error {
	qr, err := qrcode.New(text)
	if err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	tw := &terminalQR{w: w}
	if err := qr.Save(tw); err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	return tw.err
}

// terminalQR is a qrcode.Writer onto a terminal.
type terminalQR struct {
	w   io.Writer
	err error
}

const quietZone = 2

func (t *terminalQR) Write(m qrcode.Matrix) error {
	bits := m.Bitmap()
	dark := func(x, y int) bool {
		y, x = y-quietZone, x-quietZone
		return y >= 0 && y < len(bits) && x >= 0 && x < len(bits[y]) && bits[y][x]
	}
	size := len(bits) + 2*quietZone
	var b strings.Builder
	for y := 0; y < size; y += 2 {
		for x := 0; x < size; x++ {
			// Light modules print as blocks: the code reads dark-on-light on dark terminals
			// and light-on-dark ones alike, since scanners accept both polarities.
			top, bottom := !dark(x, y), !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	_, t.err = io.WriteString(t.w, b.String())
	return t.err
}

func (t *terminalQR) Close() error { return nil }
