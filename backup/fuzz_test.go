package backup_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/hufu-hsm/hufu/backup"
)

// header builds a version 1 header by hand around a blob in the hsm format (the keyring is
// not needed to decode one).
func header(name string, chunk uint32) []byte {
	blob := []byte("hW\x01\x0bhufu-kek-v1")
	blob = append(blob, make([]byte, 12+32+16)...)
	h := []byte(backup.Magic)
	h = append(h, 1, 1)
	h = binary.BigEndian.AppendUint32(h, chunk)
	h = binary.BigEndian.AppendUint64(h, 1796180400)
	h = append(h, byte(len(name)))
	h = append(h, name...)
	h = append(h, 1, 2, 3, 4, 5, 6, 7)
	h = binary.BigEndian.AppendUint16(h, uint16(len(blob)))
	return append(h, blob...)
}

// FuzzDecodeHeader: the header decoder never panics, never reads past the header, and what
// it accepts is within the format's bounds. Seeds: testdata/fuzz/FuzzDecodeHeader.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(header("hufu-backup-20261202T030000Z-0a1b2c", 64<<10))
	f.Add(append(header("b", 4096), 0xde, 0xad))
	f.Add([]byte(backup.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := backup.DecodeHeader(r)
		if err != nil {
			return
		}
		consumed := len(data) - r.Len()
		if want := 23 + len(h.Name) + 7 + 2 + len(h.WrappedKey); consumed != want {
			t.Fatalf("read %d bytes, the header is %d", consumed, want)
		}
		if h.Version != 1 || h.ChunkSize < 4096 || h.ChunkSize > 4<<20 || h.ChunkSize%512 != 0 || h.Name == "" || h.KEK == "" {
			t.Fatalf("accepted a header out of bounds: %+v", h)
		}
	})
}

func TestHeaderSeed(t *testing.T) {
	h, err := backup.DecodeHeader(bytes.NewReader(header("hufu-backup-x", 64<<10)))
	if err != nil || h.KEK != "hufu-kek-v1" || h.Name != "hufu-backup-x" || h.ChunkSize != 64<<10 {
		t.Fatalf("%+v %v", h, err)
	}
}
