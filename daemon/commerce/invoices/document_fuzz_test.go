package invoices

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"
)

// ofd builds a minimal OFD container with the given OFD.xml content.
func ofd(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const ofdXML = `<?xml version="1.0" encoding="UTF-8"?><ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016" Version="1.1" DocType="OFD"><ofd:DocBody/></ofd:OFD>`

func TestDetectDocument(t *testing.T) {
	cases := []struct {
		name    string
		content []byte
		want    string
	}{
		{"pdf", []byte("%PDF-1.7\n%%EOF\n"), MediaPDF},
		{"pdf with trailing whitespace", []byte("%PDF-2.0\nx\n%%EOF\r\n\x00 "), MediaPDF},
		{"truncated pdf", []byte("%PDF-1.7\n1 0 obj"), ""},
		{"ofd", ofd(t, map[string]string{"OFD.xml": ofdXML, "Doc_0/Document.xml": "<ofd:Document/>"}), MediaOFD},
		{"zip without OFD.xml", ofd(t, map[string]string{"word/document.xml": "<w/>"}), ""},
		{"OFD.xml not at the root", ofd(t, map[string]string{"x/OFD.xml": ofdXML}), ""},
		{"OFD.xml without ofd:OFD", ofd(t, map[string]string{"OFD.xml": "<html/>"}), ""},
		{"truncated zip", ofd(t, map[string]string{"OFD.xml": ofdXML})[:40], ""},
		{"png", []byte("\x89PNG\r\n\x1a\n"), ""},
		{"empty", nil, ""},
		{"text", []byte("发票"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DetectDocument(c.content)
			if got != c.want || (err == nil) != (c.want != "") {
				t.Fatalf("DetectDocument = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// FuzzDetectDocument: the detector never panics, never both names a type and fails, and
// accepts only content with the signature of the type it names (a PDF header and trailer,
// a ZIP local header). Seeds are in testdata/fuzz/FuzzDetectDocument.
func FuzzDetectDocument(f *testing.F) {
	f.Add([]byte("%PDF-1.7\n%%EOF\n"))
	f.Add(ofd(f, map[string]string{"OFD.xml": ofdXML}))
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DetectDocument(b)
		if err != nil {
			if got != "" {
				t.Fatalf("type %q with error %v", got, err)
			}
			return
		}
		switch got {
		case MediaPDF:
			if !bytes.HasPrefix(b, []byte("%PDF-")) || !strings.Contains(string(b), "%%EOF") {
				t.Fatal("a PDF without its header or trailer")
			}
		case MediaOFD:
			if !bytes.HasPrefix(b, []byte("PK\x03\x04")) {
				t.Fatal("an OFD without a ZIP header")
			}
		default:
			t.Fatalf("unknown type %q", got)
		}
	})
}
