package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

var bg = context.Background()

// keyring is a real SoftHSM2 keyring on a fresh token.
func keyring(t *testing.T) *hsm.Keyring {
	t.Helper()
	tok := softhsmtest.New(t)
	k, err := hsm.Initialize(bg, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

func seal(t *testing.T, k backup.KeyWrapper, plaintext []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := backup.NewWriter(bg, &buf, k, "hufu-backup-20261202T030000Z-0a1b2c", time.Unix(1796180400, 0))
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes, so chunk boundaries fall inside writes.
	for p := plaintext; len(p) > 0; {
		n := min(len(p), 7001)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(k backup.KeyWrapper, archive []byte) ([]byte, error) {
	r, err := backup.NewReader(bg, bytes.NewReader(archive), k)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	k := keyring(t)
	const c = backup.DefaultChunkSize
	for _, size := range []int{0, 1, c - 1, c, c + 1, 3 * c, 3*c + 512} {
		plaintext := bytes.Repeat([]byte("13800138000 "), size/12+1)[:size]
		archive := seal(t, k, plaintext)
		if size > 0 && bytes.Contains(archive, []byte("13800138000")) {
			t.Fatalf("size %d: the plaintext shows in the archive", size)
		}
		got, err := open(k, archive)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("size %d: %d bytes back, %v", size, len(got), err)
		}
		h, n, err := backup.CheckFraming(bytes.NewReader(archive))
		if err != nil || n != int64(len(archive)) || h.KEK != k.CurrentKEK() || h.Name != "hufu-backup-20261202T030000Z-0a1b2c" || h.Version != 1 {
			t.Fatalf("size %d: CheckFraming %+v %d %v", size, h, n, err)
		}
	}
}

// TestRefusals: every way of cutting or altering an archive is refused with its own error,
// without the plaintext.
func TestRefusals(t *testing.T) {
	k := keyring(t)
	const c = backup.DefaultChunkSize
	plaintext := bytes.Repeat([]byte{0x5a}, 2*c+100)
	archive := seal(t, k, plaintext)
	h, err := backup.DecodeHeader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	hdrLen := len(archive) - (2*(c+16) + 100 + 16)
	full := c + 16
	flip := func(i int) []byte { b := bytes.Clone(archive); b[i] ^= 1; return b }
	swapped := bytes.Clone(archive)
	copy(swapped[hdrLen:], archive[hdrLen+full:hdrLen+2*full])
	copy(swapped[hdrLen+full:], archive[hdrLen:hdrLen+full])

	other := keyring(t) // another token: its KEK of the same label is another key
	if h.KEK != other.CurrentKEK() {
		t.Fatalf("both tokens should be at %s", h.KEK)
	}
	cases := []struct {
		name    string
		archive []byte
		keys    backup.KeyWrapper
		want    error
		msg     string
	}{
		{"empty", nil, k, backup.ErrTruncated, "inside the magic"},
		{"not a backup", []byte("store/MANIFEST-000001\x00\x00\x00\x00\x00\x00"), k, backup.ErrNotBackup, ""},
		{"cut in the header", archive[:20], k, backup.ErrTruncated, "inside the header"},
		{"cut in the wrapped key", archive[:hdrLen-3], k, backup.ErrTruncated, "wrapped data key"},
		{"header only", archive[:hdrLen], k, backup.ErrTruncated, "right after its header"},
		{"cut at a chunk boundary", archive[:hdrLen+full], k, backup.ErrTruncated, "after a full chunk"},
		{"cut after two chunks", archive[:hdrLen+2*full], k, backup.ErrTruncated, "after a full chunk"},
		{"cut inside the last chunk", archive[:len(archive)-5], k, backup.ErrTampered, "last chunk (2)"},
		{"cut inside a chunk", archive[:hdrLen+full+100], k, backup.ErrTampered, "last chunk (1)"},
		{"chunk altered", flip(hdrLen + 10), k, backup.ErrTampered, "chunk 0"},
		{"tag altered", flip(len(archive) - 1), k, backup.ErrTampered, "last chunk"},
		{"chunks swapped", swapped, k, backup.ErrTampered, "chunk 0"},
		{"name altered", flip(23), k, hsm.ErrAuthFailed, "data key"},
		{"creation time altered", flip(21), k, hsm.ErrAuthFailed, "data key"},
		{"nonce prefix altered", flip(23 + len(h.Name)), k, hsm.ErrAuthFailed, "data key"},
		{"trailing data", append(bytes.Clone(archive), 0), k, backup.ErrTampered, "last chunk"},
		{"another token", archive, other, hsm.ErrAuthFailed, "under " + h.KEK},
		{"version 2", func() []byte { b := bytes.Clone(archive); b[8] = 2; return b }(), k, backup.ErrUnsupportedVersion, "version 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := open(tc.keys, tc.archive)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v; want %v mentioning %q", err, tc.want, tc.msg)
			}
			if len(got) > 0 && bytes.Equal(got, plaintext) {
				t.Fatal("the whole plaintext came back with an error")
			}
		})
	}
	// CheckFraming needs no key: it catches the cuts at chunk boundaries.
	for _, cut := range []int{hdrLen, hdrLen + full, hdrLen + 2*full} {
		if _, _, err := backup.CheckFraming(bytes.NewReader(archive[:cut])); !errors.Is(err, backup.ErrTruncated) {
			t.Errorf("CheckFraming of an archive cut at %d: %v", cut, err)
		}
	}
}

// TestDestroyedKEK: a backup whose KEK was destroyed after a rotation cannot be opened, and
// the error names the KEK it needs.
func TestDestroyedKEK(t *testing.T) {
	k := keyring(t)
	archive := seal(t, k, []byte("before the rotation"))
	if _, err := k.RotateKEK(bg); err != nil {
		t.Fatal(err)
	}
	if got, err := open(k, archive); err != nil || string(got) != "before the rotation" {
		t.Fatalf("after the rotation, before the finish: %q %v", got, err)
	}
	if err := k.DestroyKEK(bg, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := open(k, archive); !errors.Is(err, hsm.ErrUnknownKEK) || !strings.Contains(err.Error(), "hufu-kek-v1") {
		t.Fatalf("after the KEK was destroyed: %v; want ErrUnknownKEK naming hufu-kek-v1", err)
	}
}

type entry struct {
	name string
	typ  byte
	body string
	link string
}

func tarOf(t *testing.T, entries []entry, cut bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil && e.typ == tar.TypeReg {
			t.Fatal(err)
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if !cut {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestRestore extracts a good archive, and refuses a store that is there, tar archives with
// anything but plain files and directories under store/ or cut short, and altered
// archives, leaving nothing behind when it refuses.
func TestRestore(t *testing.T) {
	k := keyring(t)
	good := []entry{{"store/", tar.TypeDir, "", ""}, {"store/MANIFEST-000001", tar.TypeReg, "manifest", ""}, {"store/000002.sst", tar.TypeReg, "table", ""}}

	dir := t.TempDir()
	archive := seal(t, k, tarOf(t, good, false))
	st, err := backup.Restore(bg, bytes.NewReader(archive), k, dir, nil)
	if err != nil || st.Files != 2 || st.KEK != k.CurrentKEK() {
		t.Fatalf("restore: %+v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "store", "000002.sst")); err != nil || string(b) != "table" {
		t.Fatalf("restored file: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "store")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored store: %v %v", fi, err)
	}
	if _, err := backup.Restore(bg, bytes.NewReader(archive), k, dir, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over a store: %v", err)
	}

	tampered := bytes.Clone(archive)
	tampered[len(tampered)-20] ^= 1
	for _, c := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"parent traversal", seal(t, k, tarOf(t, append(good, entry{"../evil", tar.TypeReg, "x", ""}), false)), "not a plain relative path"},
		{"traversal inside store", seal(t, k, tarOf(t, append(good, entry{"store/../../evil", tar.TypeReg, "x", ""}), false)), "not a plain relative path"},
		{"absolute path", seal(t, k, tarOf(t, append(good, entry{"/tmp/evil", tar.TypeReg, "x", ""}), false)), "not a plain relative path"},
		{"outside store", seal(t, k, tarOf(t, append(good, entry{"tls/ca.pem", tar.TypeReg, "x", ""}), false)), "outside store/"},
		{"symlink", seal(t, k, tarOf(t, append(good, entry{"store/link", tar.TypeSymlink, "", "/etc/passwd"}), false)), "only files and directories"},
		{"hard link", seal(t, k, tarOf(t, append(good, entry{"store/hard", tar.TypeLink, "", "store/000002.sst"}), false)), "only files and directories"},
		{"device", seal(t, k, tarOf(t, append(good, entry{"store/dev", tar.TypeChar, "", ""}), false)), "only files and directories"},
		{"no manifest", seal(t, k, tarOf(t, []entry{{"store/000002.sst", tar.TypeReg, "table", ""}}, false)), "no store/MANIFEST"},
		{"tar cut short", seal(t, k, tarOf(t, good, true)), "no end-of-archive marker"},
		{"duplicate entry", seal(t, k, tarOf(t, append(good, entry{"store/000002.sst", tar.TypeReg, "again", ""}), false)), "file exists"},
		{"archive truncated", archive[:30], "truncated"},
		{"archive altered", tampered, "failed authentication"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := backup.Restore(bg, bytes.NewReader(c.archive), k, dir, nil); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v; want %q", err, c.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("a refused restore left %v", left)
			}
		})
	}
}
