package attachments

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// FuzzDetect: the detector never panics, agrees with net/http's sniffer (a different
// implementation of the same signatures) on the three types it accepts, and accepts only
// content that starts with one of their signatures. Seeds are in testdata/fuzz/FuzzDetect.
func FuzzDetect(f *testing.F) {
	f.Add([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	f.Add([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"))
	f.Add([]byte("%PDF-1.7\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Detect(b)
		sniffed, _, _ := strings.Cut(http.DetectContentType(b), ";")
		ours := []string{PNG, JPEG, PDF}
		if err != nil {
			if got != "" {
				t.Fatalf("type %q with error %v", got, err)
			}
			if slices.Contains(ours, sniffed) {
				t.Fatalf("refused what net/http sniffs as %s", sniffed)
			}
			return
		}
		if got != sniffed {
			t.Fatalf("detected %s, net/http sniffs %s", got, sniffed)
		}
		for _, m := range magic {
			if m.mediaType == got && !strings.HasPrefix(string(b), m.prefix) {
				t.Fatalf("%s without its signature", got)
			}
		}
	})
}
