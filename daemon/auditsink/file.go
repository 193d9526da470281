package auditsink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/hufu-hsm/hufu/store"
)

// fileTransport appends records to a file as JSON lines, one record per line exactly as an
// audit export writes it (store.AuditRecordJSON), and fsyncs once per batch. It works with
// either kind of log rotation: when the path no longer names the open file (moved away or
// removed, logrotate's default) the next batch reopens it; a file truncated in place
// (copytruncate) is simply appended to from its new end.
type fileTransport struct {
	path string
	f    *os.File
	buf  []byte
}

func (t *fileTransport) open(context.Context) error {
	f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	t.f = f
	return nil
}

// rotated reports whether t.path names another file than the one open (or none).
func (t *fileTransport) rotated() (bool, error) {
	want, err := os.Stat(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	have, err := t.f.Stat()
	if err != nil {
		return false, err
	}
	return !os.SameFile(want, have), nil
}

func (t *fileTransport) write(recs []*store.Record) error {
	if moved, err := t.rotated(); err != nil {
		return err
	} else if moved {
		_ = t.f.Close()
		if err := t.open(context.Background()); err != nil {
			return fmt.Errorf("reopening after rotation: %w", err)
		}
	}
	t.buf = t.buf[:0]
	for _, r := range recs {
		line, err := store.AuditRecordJSON(r)
		if err != nil {
			return err
		}
		t.buf = append(append(t.buf, line...), '\n')
	}
	st, err := t.f.Stat()
	if err != nil {
		return err
	}
	if _, err := t.f.Write(t.buf); err != nil {
		// Take back a partial batch, so the file never holds half a line; the batch is
		// written again whole.
		_ = t.f.Truncate(st.Size())
		return err
	}
	return t.f.Sync()
}

func (t *fileTransport) lost() <-chan struct{} { return nil }

// replay: a file that took a batch and fsynced it has it; nothing is sent again.
func (t *fileTransport) replay() int { return 0 }

func (t *fileTransport) close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}
