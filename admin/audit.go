package admin

import (
	"archive/tar"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// uintParam reads an optional unsigned query parameter.
func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an unsigned integer", name, v)
	}
	return n, nil
}

// auditExport streams records from..to (JSON lines, store/audit_format.go) as they are
// read. Without "to" the export reaches the head and starts with a fresh signed
// checkpoint, so the whole of it verifies offline. An error after the first byte can only
// cut the stream short, which verification reports as truncated.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, _ Token) {
	from, err := uintParam(r, "from", 0)
	var to uint64
	if err == nil {
		to, err = uintParam(r, "to", 0)
	}
	if err == nil && to != 0 && to < from {
		err = fmt.Errorf("to %d is before from %d", to, from)
	}
	if err == nil {
		err = checkExportRange(s.opts.Store, from, to)
	}
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error()+"\n")
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="hufu-audit.jsonl"`)
	cw := &committedWriter{w: w}
	err = s.opts.Store.ExportAudit(r.Context(), cw, from, to)
	switch {
	case err == nil:
	case cw.started:
		s.opts.Log.Error("admin: audit export cut short", "err", err)
	case errors.Is(err, store.ErrInvalidOptions), errors.Is(err, store.ErrNotFound):
		writeText(w, http.StatusBadRequest, "range: "+err.Error()+"\n")
	default:
		s.opts.Log.Error("admin: audit export", "err", err)
		writeText(w, http.StatusInternalServerError, "export failed (see the daemon log)\n")
	}
}

// checkExportRange refuses a range that reaches past the log, before anything is streamed:
// such an export would start with a header promising records it cannot contain (to), or
// fail reading the record before it (from), and the caller would get a truncated file or a
// 500 instead of the reason. A checkpoint can lie beyond the last stored record (evidence of
// deleted records), so only "to" 0 (up to the head) exports those.
func checkExportRange(st *store.Store, from, to uint64) error {
	head, _ := st.Head()
	switch {
	case from > head && from > 1:
		return fmt.Errorf("from: %d is past the last audit record (%d)", from, head)
	case to > head:
		return fmt.Errorf("to: %d is past the last audit record (%d); omit to for an export up to the head", to, head)
	}
	return nil
}

// committedWriter remembers whether anything was written, so an export that fails before
// its first byte still gets an error status.
type committedWriter struct {
	w       http.ResponseWriter
	started bool
}

func (c *committedWriter) Write(p []byte) (int, error) {
	c.started = true
	return c.w.Write(p)
}

// CheckpointJSON is one signed checkpoint as /audit/checkpoints lists it (the same fields
// as a checkpoint line of an export).
type CheckpointJSON struct {
	Size  uint64 `json:"size"`
	Head  string `json:"head"`
	Time  string `json:"time"`
	KeyID string `json:"key_id"`
	Sig   string `json:"sig"`
}

func (s *Server) checkpoints(w http.ResponseWriter, r *http.Request, _ Token) {
	after, err := uintParam(r, "after", 0)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error()+"\n")
		return
	}
	limit, err := uintParam(r, "limit", 100)
	if err != nil || limit < 1 || limit > store.MaxListLimit {
		writeText(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1..%d\n", store.MaxListLimit))
		return
	}
	cks, err := s.opts.Store.Checkpoints(r.Context(), after, int(limit))
	if err != nil {
		s.opts.Log.Error("admin: list checkpoints", "err", err)
		writeText(w, http.StatusInternalServerError, "listing checkpoints failed\n")
		return
	}
	out := struct {
		Checkpoints []CheckpointJSON `json:"checkpoints"`
		Next        string           `json:"next,omitempty"` // pass as ?after= for the next page
	}{Checkpoints: []CheckpointJSON{}}
	for _, c := range cks {
		out.Checkpoints = append(out.Checkpoints, CheckpointJSON{
			Size: c.Size, Head: hex.EncodeToString(c.Head[:]), Time: time.Unix(0, c.Time).UTC().Format(time.RFC3339Nano),
			KeyID: hex.EncodeToString(c.KeyID[:]), Sig: base64.StdEncoding.EncodeToString(c.Signature),
		})
	}
	if len(cks) == int(limit) {
		out.Next = strconv.FormatUint(cks[len(cks)-1].Size, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) publicKey(w http.ResponseWriter, _ *http.Request, _ Token) {
	pem, err := s.opts.AuditKeyPEM()
	if err != nil {
		s.opts.Log.Error("admin: audit public key", "err", err)
		writeText(w, http.StatusInternalServerError, "the audit public key is unavailable\n")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(pem)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// backup makes a Pebble checkpoint in the scratch directory and streams it as a tar
// archive of store/<file> entries, encrypted under a fresh data key that the HSM wraps
// (package backup), then removes the scratch copy. The request is audited with the
// caller's role before the copy (store.Backup adds its own "store.backup" record, inside
// the snapshot); a failure while streaming is audited after it.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, who Token) {
	var id [6]byte
	_, _ = rand.Read(id[:])
	name := "hufu-backup-" + s.opts.Clock.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id[:])
	dir := filepath.Join(s.opts.BackupDir, name)
	if err := s.audit(r, who, "admin.backup", "started", map[string]string{"backup": name}); err != nil {
		writeText(w, http.StatusServiceUnavailable, "the audit log cannot be written; refusing\n")
		return
	}
	if err := os.MkdirAll(s.opts.BackupDir, 0o700); err != nil {
		s.failBackup(w, r, who, name, err)
		return
	}
	defer os.RemoveAll(dir)
	if err := s.opts.Store.Backup(r.Context(), dir, "admin:"+who.Name); err != nil {
		s.failBackup(w, r, who, name, err)
		return
	}
	// The data key is wrapped before anything is sent, so an HSM that fails here still
	// gets an error status.
	bw, err := backup.NewWriter(r.Context(), &deferredHeaderWriter{w: w, name: name}, s.opts.BackupKey, name, s.opts.Clock.Now())
	if err != nil {
		s.failBackup(w, r, who, name, err)
		return
	}
	err = writeTar(bw, dir, "store")
	if err == nil {
		err = bw.Close()
	}
	if err != nil {
		s.opts.Log.Error("admin: streaming backup failed", "backup", name, "err", err)
		// The status is sent; the archive lacks its last chunk, and hufu admin backup and
		// restore say it is truncated.
		_ = s.audit(r, who, "admin.backup", store.OutcomeFailed, map[string]string{"backup": name, "error": err.Error()})
		return
	}
	_ = s.audit(r, who, "admin.backup", store.OutcomeOK, map[string]string{"backup": name})
}

// deferredHeaderWriter sets the archive's response headers at its first write.
type deferredHeaderWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (d *deferredHeaderWriter) Write(p []byte) (int, error) {
	if !d.started {
		d.started = true
		d.w.Header().Set("Content-Type", "application/octet-stream")
		d.w.Header().Set("Content-Disposition", `attachment; filename="`+d.name+`.hufubak"`)
	}
	return d.w.Write(p)
}

func (s *Server) failBackup(w http.ResponseWriter, r *http.Request, who Token, name string, err error) {
	s.opts.Log.Error("admin: backup failed", "backup", name, "err", err)
	_ = s.audit(r, who, "admin.backup", store.OutcomeFailed, map[string]string{"backup": name, "error": err.Error()})
	if errors.Is(err, hsm.ErrUnavailable) {
		writeText(w, http.StatusServiceUnavailable, "backup failed: the HSM is unavailable; retry later\n")
		return
	}
	writeText(w, http.StatusInternalServerError, "backup failed (see the daemon log)\n")
}

// writeTar writes the regular files of dir (recursively) under prefix/.
func writeTar(w io.Writer, dir, prefix string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700, ModTime: info.ModTime()})
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("backup: %s is not a regular file", rel)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
