//go:build cgo

package hsm

import (
	"context"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// anchorHandle is a second handle on the module for the anchor's data object: crypto11
// has no API for data objects and does not export its sessions. dlopen hands out the
// library crypto11 loaded and initialised, and PKCS#11 login state belongs to the process
// and the token, so sessions opened here are logged in as long as the keyring is. The
// handle never calls C_Initialize or C_Finalize. Each operation opens and closes its own
// session (the anchor moves once per checkpoint), so the handle holds no session between
// them.
type anchorHandle struct {
	mu   sync.Mutex // serialises read-compare-write of the anchor
	p    *pkcs11.Ctx
	slot uint
}

// anchorSession opens a read-write session on the token; call with anchor.mu held.
func (k *Keyring) anchorSession() (pkcs11.SessionHandle, error) {
	a := &k.anchor
	if a.p == nil {
		p := pkcs11.New(k.module)
		if p == nil {
			return 0, fmt.Errorf("load %s", k.module)
		}
		slot, err := findSlot(p, k.cfg)
		if err != nil {
			p.Destroy()
			return 0, err
		}
		a.p, a.slot = p, slot
	}
	return a.p.OpenSession(a.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
}

// findSlot finds the token as crypto11 does: the first slot whose token's serial or label
// matches.
func findSlot(p *pkcs11.Ctx, cfg Config) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, err
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			return 0, err
		}
		if (ti.SerialNumber != "" && ti.SerialNumber == cfg.TokenSerial) || (ti.Label != "" && ti.Label == cfg.TokenLabel) {
			return s, nil
		}
	}
	return 0, ErrTokenNotFound
}

func (k *Keyring) closeAnchor() {
	k.anchor.mu.Lock()
	defer k.anchor.mu.Unlock()
	if k.anchor.p != nil {
		k.anchor.p.Destroy()
		k.anchor.p = nil
	}
}

// findAnchors returns the handles of the anchor's data objects: normally one, none on a
// token that has no anchor yet, two after a crash inside writeAnchor.
func (k *Keyring) findAnchors(s pkcs11.SessionHandle) ([]pkcs11.ObjectHandle, error) {
	p := k.anchor.p
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.cfg.AnchorLabel),
	}
	if err := p.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	objs, _, err := p.FindObjects(s, 16)
	if ferr := p.FindObjectsFinal(s); err == nil {
		err = ferr
	}
	return objs, err
}

// readAnchor returns the anchor (the highest, if a crash left two objects) and every
// object that holds one.
func (k *Keyring) readAnchor(s pkcs11.SessionHandle) (AuditAnchor, []pkcs11.ObjectHandle, bool, error) {
	objs, err := k.findAnchors(s)
	if err != nil {
		return AuditAnchor{}, nil, false, err
	}
	var best AuditAnchor
	for i, obj := range objs {
		attrs, err := k.anchor.p.GetAttributeValue(s, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return AuditAnchor{}, nil, false, err
		}
		a, err := decodeAnchor(attrs[0].Value)
		if err != nil {
			return AuditAnchor{}, nil, false, err
		}
		if i == 0 || a.Size > best.Size {
			best = a
		}
	}
	return best, objs, len(objs) > 0, nil
}

// writeAnchor replaces the anchor's objects old by one holding a. Tokens may make a data
// object's CKA_VALUE read-only (SoftHSM2 does), so the new value is a new object, created
// before the old ones are destroyed: a crash in between leaves two objects, of which
// readAnchor takes the higher, and the next write removes both.
func (k *Keyring) writeAnchor(s pkcs11.SessionHandle, old []pkcs11.ObjectHandle, a AuditAnchor) error {
	// Private: only a logged-in session may read or change it, as for the keys.
	if _, err := k.anchor.p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.cfg.AnchorLabel),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, "hufu"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, a.encode()),
	}); err != nil {
		return err
	}
	for _, obj := range old {
		if err := k.anchor.p.DestroyObject(s, obj); err != nil {
			return err
		}
	}
	return nil
}

// withAnchor runs f with a fresh session under the anchor's lock, as one keyring operation.
func (k *Keyring) withAnchor(ctx context.Context, f func(s pkcs11.SessionHandle) error) error {
	return k.do(ctx, OpAuditAnchor, func() error {
		k.anchor.mu.Lock()
		defer k.anchor.mu.Unlock()
		s, err := k.anchorSession()
		if err != nil {
			return err
		}
		defer k.anchor.p.CloseSession(s)
		return f(s)
	})
}

// AuditAnchor reads the audit anchor; found is false on a token that has none yet (a
// token initialised before anchors existed, or a new token).
func (k *Keyring) AuditAnchor(ctx context.Context) (a AuditAnchor, found bool, err error) {
	err = k.withAnchor(ctx, func(s pkcs11.SessionHandle) error {
		a, _, found, err = k.readAnchor(s)
		return err
	})
	return a, found, err
}

// RaiseAuditAnchor moves the anchor up to a checkpoint of size records with head hash
// head, creating it if the token has none. It never lowers the anchor: a size below the
// anchor's is ignored, and the anchor's own size with another head is ErrAnchorConflict.
// Call it only after the checkpoint is durable in the store, so that the anchor is never
// ahead of a checkpoint the store holds.
func (k *Keyring) RaiseAuditAnchor(ctx context.Context, size uint64, head [32]byte) error {
	return k.withAnchor(ctx, func(s pkcs11.SessionHandle) error {
		cur, old, found, err := k.readAnchor(s)
		if err != nil {
			return err
		}
		switch {
		case found && cur.Size > size:
			return nil
		case found && cur.Size == size && cur.Head == head:
			return nil
		case found && cur.Size == size:
			return fmt.Errorf("raise audit anchor to %d: %w", size, ErrAnchorConflict)
		}
		return k.writeAnchor(s, old, AuditAnchor{Size: size, Head: head})
	})
}

// ResetAuditAnchor sets the anchor to size and head even if that lowers it. Only the
// operator's restore acknowledgement calls it, after recording the restore in the audit
// log and signing a checkpoint over that record.
func (k *Keyring) ResetAuditAnchor(ctx context.Context, size uint64, head [32]byte) error {
	return k.withAnchor(ctx, func(s pkcs11.SessionHandle) error {
		// Found, not read: an anchor in a format this build cannot read is replaced too,
		// resetting is the operator's explicit decision.
		old, err := k.findAnchors(s)
		if err != nil {
			return err
		}
		return k.writeAnchor(s, old, AuditAnchor{Size: size, Head: head})
	})
}
