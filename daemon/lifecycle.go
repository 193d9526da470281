package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/store"
)

// Lifecycle audit records and the audit anchor. The daemon's own actor in the audit log
// is "hufud". Records:
//
//	daemon.start   after the store passed the anchor check; the build, the mode, the anchor,
//	               and the configuration's admin tokens (names and roles, never hashes)
//	daemon.stop    on a clean shutdown, before the final checkpoint
//	daemon.reload  on SIGHUP: the TLS material re-read, and the configuration keys (paths
//	               only, never values) that differ from the running configuration
//
// The anchor (hsm anchor_format.go) is checked before anything is served: a store whose
// log is behind it, or differs from it at the anchored record, was restored or rolled back,
// and the daemon refuses it (ErrRestoredStore) until an operator acknowledges the restore
// (AcknowledgeRestore, hufud acknowledge-restore).

const daemonActor = "hufud"

// ErrRestoredStore is returned by Open for a store whose audit log is behind the HSM's
// audit anchor or differs from it: it wraps the *store.AnchorMismatch. hufud exits with
// a code of its own (see cmd/hufud) and the unit does not restart on it.
var ErrRestoredStore = errors.New("the store is older than the audit log the HSM has anchored: it was restored from a backup or rolled back")

// anchorNote says, for the start record, what the anchor check found.
type anchorNote struct {
	created bool
	size    uint64
}

// checkAuditAnchor compares the store with the HSM's audit anchor and, if they agree,
// raises the anchor to the store's last checkpoint (a crash between signing a checkpoint
// and raising the anchor leaves the anchor behind, never ahead). A token without an anchor
// (first start with anchors, or a new token) gets one at the store's last checkpoint.
func (d *Daemon) checkAuditAnchor(ctx context.Context) (anchorNote, error) {
	anchor, found, err := d.keyring.AuditAnchor(ctx)
	if err != nil {
		return anchorNote{}, fmt.Errorf("reading the audit anchor: %w", err)
	}
	if found {
		if err := d.store.CheckAnchor(ctx, anchor.Size, anchor.Head); err != nil {
			var m *store.AnchorMismatch
			if errors.As(err, &m) {
				d.opts.Log.Error("refusing to serve: the audit log is not the one the HSM anchored",
					"store_head", m.StoreHead, "anchor", m.AnchorSize, "forked", m.Forked,
					"action", "if this store was restored from a backup on purpose, keep hufud stopped and run `hufud acknowledge-restore -config FILE -operator NAME` (audited), then start hufud; otherwise find out who replaced or rolled back the store")
				return anchorNote{}, fmt.Errorf("%w: %w; if the restore was intended, run hufud acknowledge-restore with hufud stopped", ErrRestoredStore, err)
			}
			return anchorNote{}, err
		}
	}
	note := anchorNote{created: !found, size: anchor.Size}
	var size uint64
	var head [32]byte
	if c := d.store.LastCheckpoint(); c != nil {
		size, head = c.Size, c.Head
	}
	if !found || size > anchor.Size {
		if err := d.keyring.RaiseAuditAnchor(ctx, size, head); err != nil {
			return anchorNote{}, fmt.Errorf("raising the audit anchor: %w", err)
		}
		note.size = size
	}
	if note.created {
		d.opts.Log.Warn("the HSM token had no audit anchor; created one at the store's last checkpoint (first start of this version, or a new token)", "anchor", size)
	}
	return note, nil
}

// recordStart appends daemon.start.
func (d *Daemon) recordStart(ctx context.Context, note anchorNote) error {
	details := map[string]string{
		"version": buildinfo.Read().Version, "mode": mode(d.cfg),
		"audit_anchor": strconv.FormatUint(note.size, 10),
	}
	if note.created {
		details["audit_anchor_created"] = "the HSM token had no audit anchor (first start with anchors, or a new token)"
	}
	tokens := make([]string, 0, len(d.cfg.Admin.Tokens))
	for _, t := range d.cfg.Admin.Tokens {
		tokens = append(tokens, t.Name+":"+t.Role)
	}
	slices.Sort(tokens)
	details["config_admin_tokens"] = limitList(tokens)
	if err := d.store.Append(ctx, store.Event{Actor: daemonActor, Action: "daemon.start", Outcome: store.OutcomeOK, Details: details}); err != nil {
		return fmt.Errorf("recording the start in the audit log: %w", err)
	}
	d.startRecorded = true
	return nil
}

// recordStop appends daemon.stop; close calls it before the store's final checkpoint.
func (d *Daemon) recordStop(ctx context.Context) {
	if !d.startRecorded {
		return
	}
	if err := d.store.Append(ctx, store.Event{Actor: daemonActor, Action: "daemon.stop", Outcome: store.OutcomeOK}); err != nil {
		d.opts.Log.Error("recording the stop in the audit log failed", "err", err)
	}
}

// Reload handles SIGHUP: it re-reads the TLS material of both listeners (the only thing
// applied without a restart) and records daemon.reload with the outcome and, if next is not
// nil (the configuration as read again), the key paths that differ from the running
// configuration, which take effect at the next start. loadErr is why the configuration
// could not be read again, if it could not; it is recorded without its text, which may
// quote the file.
func (d *Daemon) Reload(ctx context.Context, next *config.Config, loadErr error) error {
	tlsErr := d.ReloadTLS()
	details := map[string]string{"tls": "reloaded"}
	outcome := store.OutcomeOK
	if tlsErr != nil {
		details["tls"], outcome = "failed; the previous material stays in use", store.OutcomeFailed
	}
	switch {
	case loadErr != nil:
		details["config"] = "could not be read again or is invalid (hufud validate lists the problems); nothing changed"
	case next != nil:
		changed := config.Changed(d.cfg, *next)
		if len(changed) == 0 {
			details["config"] = "unchanged"
		} else {
			details["config"] = "changed; the changes take effect at the next start"
			details["config_changed"] = limitList(changed)
		}
	}
	if err := d.store.Append(ctx, store.Event{Actor: daemonActor, Action: "daemon.reload", Outcome: outcome, Details: details}); err != nil {
		return errors.Join(tlsErr, fmt.Errorf("recording the reload in the audit log: %w", err))
	}
	return tlsErr
}

// limitList joins items with commas, cut to stay well inside one audit detail.
func limitList(items []string) string {
	const limit = 1000
	var b strings.Builder
	for i, it := range items {
		if b.Len()+len(it)+1 > limit {
			fmt.Fprintf(&b, ",… (%d more)", len(items)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(it)
	}
	return b.String()
}

// RestoreAcknowledgement is what AcknowledgeRestore did.
type RestoreAcknowledgement struct {
	// Needed is false when the store agreed with the anchor: nothing was written.
	Needed bool
	// StoreHead is the restored log's last record before the acknowledgement, AnchorSize
	// the anchored checkpoint it fell short of (or differed at).
	StoreHead, AnchorSize uint64
	Forked                bool
	// Record is the acknowledgement's audit record; Anchor the checkpoint the anchor now
	// holds.
	Record, Anchor uint64
}

// AcknowledgeRestore is the operator's explicit, audited acceptance of a store that the
// anchor check refuses (hufud acknowledge-restore). It runs with the daemon stopped (the
// store's lock refuses a second opener): it appends store.restore.acknowledge ("restored
// from backup at record N (HSM anchor was M)"), signs a checkpoint over it, and only then
// resets the HSM's anchor to that checkpoint. A crash in between leaves the anchor where it
// was: the daemon still refuses, and running the command again records a second
// acknowledgement. actor names the operator ("operator:<name>"). cfg must be resolved.
func AcknowledgeRestore(ctx context.Context, cfg config.Config, actor string) (RestoreAcknowledgement, error) {
	var ack RestoreAcknowledgement
	if usesDevSoftHSM(cfg) {
		if _, err := softhsm.Provision(softhsm.Options{Dir: softhsmDir(cfg), Label: cfg.HSM.TokenLabel, ModulePath: cfg.HSM.Module}); err != nil {
			return ack, err
		}
	}
	kr, err := hsm.Open(ctx, hsmConfig(cfg, nil))
	if err != nil {
		return ack, err
	}
	defer kr.Close()
	st, err := store.Open(ctx, store.Options{
		Dir: filepath.Join(cfg.DataDir, "store"), Signer: kr.AuditSigner(),
		CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval.Std(),
	})
	if err != nil {
		return ack, fmt.Errorf("%w (is hufud still running? stop it first)", err)
	}
	closeStore := func() error { return st.Close(ctx) }
	defer func() {
		if closeStore != nil {
			_ = closeStore()
		}
	}()
	anchor, found, err := kr.AuditAnchor(ctx)
	if err != nil {
		return ack, err
	}
	var m *store.AnchorMismatch
	switch err := st.CheckAnchor(ctx, anchor.Size, anchor.Head); {
	case !found || err == nil:
		return ack, nil
	case !errors.As(err, &m):
		return ack, err
	}
	ack = RestoreAcknowledgement{Needed: true, StoreHead: m.StoreHead, AnchorSize: m.AnchorSize, Forked: m.Forked}
	details := map[string]string{
		"restored_at_record": strconv.FormatUint(m.StoreHead, 10),
		"anchor_was":         strconv.FormatUint(m.AnchorSize, 10),
		"anchor_head":        hex.EncodeToString(m.AnchorHead[:]),
		"note":               fmt.Sprintf("restored from backup at record %d (HSM anchor was %d)", m.StoreHead, m.AnchorSize),
	}
	if m.Forked {
		details["note"] = fmt.Sprintf("restored from backup at record %d (HSM anchor was %d, and this log's record %d differs from the anchored one)", m.StoreHead, m.AnchorSize, m.AnchorSize)
	}
	if err := st.Append(ctx, store.Event{Actor: actor, Action: "store.restore.acknowledge", Subject: "audit anchor", Outcome: store.OutcomeOK, Details: details}); err != nil {
		return ack, err
	}
	ack.Record, _ = st.Head()
	c, err := st.Checkpoint(ctx)
	if err != nil {
		return ack, fmt.Errorf("signing a checkpoint over the acknowledgement: %w", err)
	}
	if err := kr.ResetAuditAnchor(ctx, c.Size, c.Head); err != nil {
		return ack, fmt.Errorf("resetting the audit anchor (the acknowledgement is recorded; run the command again): %w", err)
	}
	ack.Anchor = c.Size
	err, closeStore = closeStore(), nil
	return ack, err
}
