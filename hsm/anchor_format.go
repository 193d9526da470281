package hsm

import (
	"encoding/binary"
	"fmt"
)

// The audit anchor is the newest signed audit checkpoint's size and head hash, kept on the
// token as a PKCS#11 data object (CKO_DATA, a private token object labelled
// Config.AnchorLabel, CKA_APPLICATION "hufu"), outside the store: restoring or rolling
// back the store does not roll the anchor back, so the daemon can tell at start that its
// log is older than one it has already signed (see daemon and docs/operations.md).
//
// The object's CKA_VALUE (56 bytes, integers big-endian):
//
//	offset  size  field
//	0       16    ASCII "hufu-audit-anch1"
//	16      8     size: the checkpoint covers records 1..size
//	24      32    head: the chain hash h_size of record size
//
// hufu only ever raises it (RaiseAuditAnchor); the one exception is ResetAuditAnchor, run by
// the operator's audited restore acknowledgement (hufud acknowledge-restore).

const (
	anchorTag = "hufu-audit-anch1"
	anchorLen = 16 + 8 + 32
)

// AuditAnchor is the content of the audit anchor.
type AuditAnchor struct {
	Size uint64
	Head [32]byte
}

func (a AuditAnchor) encode() []byte {
	b := make([]byte, 0, anchorLen)
	b = append(b, anchorTag...)
	b = binary.BigEndian.AppendUint64(b, a.Size)
	return append(b, a.Head[:]...)
}

func decodeAnchor(b []byte) (AuditAnchor, error) {
	if len(b) != anchorLen || string(b[:16]) != anchorTag {
		return AuditAnchor{}, fmt.Errorf("audit anchor: %d bytes not in the anchor format: %w", len(b), ErrHSM)
	}
	a := AuditAnchor{Size: binary.BigEndian.Uint64(b[16:24])}
	copy(a.Head[:], b[24:])
	return a, nil
}
