package invoices

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"strings"
)

// Media types of invoice documents.
const (
	MediaPDF = "application/pdf"
	// MediaOFD is an OFD document (GB/T 33190-2016), the format of China's electronic
	// invoices: a ZIP container whose root holds OFD.xml.
	MediaOFD = "application/ofd"
)

// maxOFDEntries bounds the entries of an OFD container DetectDocument accepts.
const maxOFDEntries = 10000

// ErrNotInvoiceDocument: the content is neither a PDF nor an OFD document.
var ErrNotInvoiceDocument = errors.New("an invoice document is a PDF or OFD file (the type is read from the content)")

// DetectDocument returns the media type of an invoice document, read from its content only:
// a PDF starts with "%PDF-" and ends with "%%EOF" (trailing whitespace allowed); an OFD
// file is a ZIP archive whose central directory lists at most 10000 entries, among them
// OFD.xml at the root, whose first 64 KiB contain an ofd:OFD element. Nothing else is
// accepted. It decompresses at most 64 KiB, so any input of bounded size is safe to check.
func DetectDocument(b []byte) (string, error) {
	switch {
	case bytes.HasPrefix(b, []byte("%PDF-")):
		tail := bytes.TrimRight(b, " \t\r\n\x00")
		if !bytes.HasSuffix(tail, []byte("%%EOF")) {
			return "", errors.New("a PDF that does not end with %%EOF: truncated?")
		}
		return MediaPDF, nil
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		if err := checkOFD(b); err != nil {
			return "", err
		}
		return MediaOFD, nil
	}
	return "", ErrNotInvoiceDocument
}

func checkOFD(b []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return errors.New("a ZIP file that does not open: not an OFD document")
	}
	if len(zr.File) > maxOFDEntries {
		return errors.New("an OFD container with too many entries")
	}
	for _, f := range zr.File {
		if f.Name != "OFD.xml" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return errors.New("OFD.xml does not open: not an OFD document")
		}
		head, err := io.ReadAll(io.LimitReader(rc, 64<<10))
		rc.Close()
		if err != nil {
			return errors.New("OFD.xml does not read: not an OFD document")
		}
		if !strings.Contains(string(head), "<ofd:OFD") {
			return errors.New("OFD.xml has no ofd:OFD element: not an OFD document")
		}
		return nil
	}
	return errors.New("a ZIP file without OFD.xml: not an OFD document")
}
