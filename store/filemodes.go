package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// File modes. The store holds wrapped key shares, phone numbers and the audit log: its
// directory is 0700 and its files 0600 whatever the process umask. Pebble creates files
// 0666 and directories 0755 (less the umask), so the filesystem under it is wrapped to
// create them private, and Open tightens what an older build left behind.

const (
	privateFileMode fs.FileMode = 0o600
	privateDirMode  fs.FileMode = 0o700
)

// privateFS creates files 0600 and directories 0700. While noReuse is set it also declines
// to recycle an old write-ahead log (Pebble renames an obsolete log and overwrites it from
// the start, so its old tail, deleted values included, would stay on disk): it deletes the
// old file and creates a new one, which vfs.FS allows (CompactAll).
type privateFS struct {
	vfs.FS
	noReuse *atomic.Bool
}

func (p privateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return f, private(f, name)
}

func (p privateFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, category, opts...)
	if err != nil {
		return nil, err
	}
	return f, private(f, name)
}

func (p privateFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if p.noReuse != nil && p.noReuse.Load() {
		if err := p.FS.Remove(oldname); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return p.Create(newname, category)
	}
	f, err := p.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return f, private(f, newname)
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return p.FS.MkdirAll(dir, privateDirMode)
}

// private sets f's mode to 0600 through its descriptor: the file was created moments ago
// and is still empty, so its wider creation mode exposed nothing. Files without an OS
// descriptor (an in-memory filesystem in tests) are left alone.
func private(f vfs.File, name string) error {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return nil
	}
	if err := unix.Fchmod(int(fd), uint32(privateFileMode)); err != nil {
		_ = f.Close()
		return &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return nil
}

// tightenModes makes dir 0700 and the files in it 0600 (Pebble keeps no subdirectories).
// A dir that is not on the OS filesystem (in-memory tests) is skipped.
func tightenModes(dir string) error {
	if err := os.Chmod(dir, privateDirMode); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		// Pebble, already open, deletes obsolete files (an old OPTIONS file, say) in the
		// background: a file gone between the listing and its chmod needs nothing.
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm()&^privateFileMode != 0 {
			if err := os.Chmod(filepath.Join(dir, e.Name()), privateFileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
