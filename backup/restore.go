package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Stats is what a restored archive held.
type Stats struct {
	Name  string // the backup's name, from its header
	KEK   string // the KEK its data key was wrapped under
	Files int
	Bytes int64
}

// Restore decrypts the backup read from in (its data key unwrapped by keys, the HSM) and
// extracts it into dataDir/store, which must be absent or empty. Only directories and
// regular files under store/ are accepted (no absolute path, no "." or "..", no link or
// device), with a Pebble manifest and tar's end marker. Everything is extracted into a
// scratch directory in dataDir first, with files 0600 and directories 0700, and renamed into
// place only once the last chunk has authenticated: a truncated, tampered or refused archive
// leaves nothing behind. record, if not nil, is given the extracted store while it is still
// in the scratch directory (the daemon writes the restore into its audit log there): if it
// fails, nothing is restored.
func Restore(ctx context.Context, in io.Reader, keys KeyWrapper, dataDir string, record func(storeDir string, st Stats) error) (Stats, error) {
	target := filepath.Join(dataDir, "store")
	empty := false
	switch fi, err := os.Lstat(target); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Stats{}, err
	case !fi.IsDir():
		return Stats{}, fmt.Errorf("%s exists and is not a directory: refusing to restore", target)
	default:
		entries, err := os.ReadDir(target)
		if err != nil {
			return Stats{}, err
		}
		if len(entries) != 0 {
			return Stats{}, fmt.Errorf("%s is not empty: refusing to restore over a store (stop hufud and move it away first)", target)
		}
		empty = true
	}
	br, err := NewReader(ctx, in, keys)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Name: br.Header.Name, KEK: br.Header.KEK}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return st, err
	}
	scratch, err := os.MkdirTemp(dataDir, ".restore-*")
	if err != nil {
		return st, err
	}
	defer os.RemoveAll(scratch)
	files, size, err := readTar(br, func(h *tar.Header, clean string, body io.Reader) error {
		p := filepath.Join(scratch, filepath.FromSlash(clean))
		if h.Typeflag == tar.TypeDir {
			return os.MkdirAll(p, 0o700)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		if _, err := io.Copy(out, body); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	st.Files, st.Bytes = files, size
	if err != nil {
		return st, err
	}
	if record != nil {
		if err := record(filepath.Join(scratch, "store"), st); err != nil {
			return st, fmt.Errorf("recording the restore in the restored audit log (nothing restored): %w", err)
		}
	}
	if empty {
		if err := os.Remove(target); err != nil {
			return st, err
		}
	}
	if err := os.Rename(filepath.Join(scratch, "store"), target); err != nil {
		return st, err
	}
	if d, err := os.Open(dataDir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return st, nil
}

// entryName checks a tar entry's name and type: only directories and regular files under
// "store/", no absolute path, no "." or ".." element, no link or device. It returns the
// cleaned slash path.
func entryName(h *tar.Header) (string, error) {
	name := h.Name
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	default:
		return "", fmt.Errorf("%w: entry %q: type %q refused (only files and directories)", ErrUnsafeEntry, name, h.Typeflag)
	}
	trimmed := strings.TrimSuffix(name, "/")
	if trimmed == "" || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) || filepath.IsAbs(name) || path.Clean(trimmed) != trimmed {
		return "", fmt.Errorf("%w: entry %q: not a plain relative path", ErrUnsafeEntry, name)
	}
	parts := strings.Split(trimmed, "/")
	if slices.Contains(parts, "..") || slices.Contains(parts, ".") {
		return "", fmt.Errorf("%w: entry %q: not a plain relative path", ErrUnsafeEntry, name)
	}
	if parts[0] != "store" || (len(parts) == 1 && h.Typeflag != tar.TypeDir) {
		return "", fmt.Errorf("%w: entry %q: outside store/", ErrUnsafeEntry, name)
	}
	return trimmed, nil
}

// readTar reads the decrypted tar archive, checking every entry (entryName), that it ends
// with tar's end marker and holds a Pebble manifest, and calls each for each entry, in
// order. The decrypting reader ends cleanly only after the archive's last chunk, so a tar
// stream that ends early is a tar error, not a silent short restore.
func readTar(r io.Reader, each func(h *tar.Header, clean string, body io.Reader) error) (files int, size int64, err error) {
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	manifest := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, size, fmt.Errorf("reading the archive: %w", err)
		}
		clean, err := entryName(h)
		if err != nil {
			return files, size, err
		}
		if h.Typeflag == tar.TypeReg {
			files++
			size += h.Size
			manifest = manifest || strings.HasPrefix(clean, "store/MANIFEST-")
		}
		if err := each(h, clean, tr); err != nil {
			return files, size, err
		}
	}
	if _, err := io.Copy(io.Discard, tail); err != nil {
		return files, size, fmt.Errorf("reading the archive: %w", err)
	}
	if !tail.ended() {
		return files, size, fmt.Errorf("%w: the tar archive inside has no end-of-archive marker", ErrUnsafeEntry)
	}
	if !manifest {
		return files, size, fmt.Errorf("%w: no store/MANIFEST-* file", ErrUnsafeEntry)
	}
	return files, size, nil
}

// tailReader keeps the last 1024 bytes it read: a complete tar archive ends with two zero
// blocks.
type tailReader struct {
	r    io.Reader
	n    int64
	last [1024]byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	for _, b := range p[:n] {
		t.last[t.n%1024] = b
		t.n++
	}
	return n, err
}

func (t *tailReader) ended() bool {
	if t.n < 1024 || t.n%512 != 0 {
		return false
	}
	for _, b := range t.last {
		if b != 0 {
			return false
		}
	}
	return true
}
