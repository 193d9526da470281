package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The key schema: every key hufu stores, in one place.
//
// Keys are ASCII-readable byte strings: a one-letter kind, then "/"-separated parts. Parts
// are caller-chosen identifiers (validated by [ValidPart]: non-empty, at most
// [MaxPartLen] bytes, valid UTF-8, no "/" and no control characters), so a key never has
// to be escaped and a prefix scan of "u/" returns users and nothing else. Numbers that
// must sort are fixed-width lowercase hex.
//
//	m/meta                          StoreMeta: schema version, creation time
//	u/<user id>                     users
//	e/<enterprise id>               enterprises
//	k/<key id>                      split keys (SplitKey) with their wrapped primary share
//	k/<key id>/usage/<inverted time>-<inverted seq>-<random>
//	                                usage records of a key (UsageRecord), newest first
//	k/<key id>/delegate/<user id>/<device id>
//	                                a member's delegated share pair of the key (DelegatedShare)
//	c/ca/<ca id>                    embedded CAs (daemon/ca)
//	c/revoked/<ca id>/<level>/<serial hex>
//	                                one revocation entry (RevokedSerial) of a CA level ("issuing":
//	                                leaves, "root": issuing CA certificates); c/revoked-count/<ca id>/<level>
//	                                the level's entry count (RevocationCount), written with each
//	                                entry; c/crl/<ca id>/<level> its current CRL (CRLRecord).
//	                                Schema version 3 moved them out of c/ca/<ca id> (daemon/ca)
//	c/cert/<user id>/<serial>       certificates (daemon/certs)
//	c/issuing/<order id>            a paid order's reserved serials and validity until its
//	                                certificates are recorded or revoked (IssuingReservation,
//	                                daemon/certs/issuing.go)
//	c/seal/<owner>/<seal id>        seals; c/seal-image/<seal id>, c/seal-grant/... (daemon/seals)
//	o/order/<user id>/<order id>    orders; o/inbox/<user id>/... messages; o/letter/... letters
//	o/att/<sha256 hex>              application attachments, stored once per content
//	o/att-link/<application>/<sha>  an application's attachments (daemon/attachments)
//	s/<session id>                  scan sessions (usually with an expiry)
//	b/opening/<id>                  bid openings; b/envelope/<opening>/<envelope id>,
//	                                b/consent/<opening>/<session id>, b/event/<opening>/<time>-<seq>,
//	                                b/report/<opening> (daemon/openings)
//	l/entry/<entry id>              ledger entries (LedgerEntry), newest first; l/balance/<account>
//	                                running totals (LedgerBalance); l/reversal/<entry id> (daemon/commerce/ledger)
//	p/offline/<order id>            offline payments awaiting a payment desk (daemon/commerce/payments)
//	r/case/<user id>/<case id>      after-sales cases (AfterSalesCase), newest first; r/open/<case id>
//	                                the desk's queue of open cases (daemon/commerce/aftersales)
//	v/<purpose>/<id>                short-lived verification records (SMS codes, tickets);
//	                                those found by a phone number (SMS codes, per-number
//	                                counters and lockouts) end in its HSM fingerprint
//	                                (daemon/accounts/phoneindex.go), never the number
//	i/inv/<user id>/<invoice id>    invoices (Invoice), newest first; i/titles/<user id> saved titles,
//	                                i/doc/<invoice id> issued documents, i/queue/... the desk's queue
//	                                (daemon/commerce/invoices)
//	n/card/<user id>/<card id>      bound bank cards, number HSM-wrapped (daemon/commerce/cards);
//	                                n/holder/<user id>, n/rate/<user id>/<window>
//	h/fb/<user id>/<feedback id>    feedback and its replies (daemon/commerce/support);
//	                                h/fb-open/<feedback id>: the desk's queue of open feedback
//	w/order/<user id>/<order id>    mutual-recognition top-up and day-pass orders (WalletOrder),
//	                                newest first; w/use/<user id>/<id> per-use debits (WalletUse);
//	                                w/pass/<user id>/<platform> day passes (DayPass) (daemon/commerce/wallet)
//	y/<system name>                 system clients registered on the admin surface
//	z/token/<name>                  admin tokens created on the admin surface (AdminToken,
//	                                only the token's SHA-256; kept after revocation until
//	                                swept some time after its expiry)
//	z/approval/<id>                 changes awaiting a second security officer (AdminApproval)
//	z/erasure/last                  when the last KEK erasure finished (google.protobuf.Timestamp,
//	                                admin/erasure.go); z/erasure/since when the schedule first ran
//	                                on a store without one (the first erasure's base)
//	x/<index>/<value>               unique index entry -> IndexEntry{owner key}
//	x/<index>/<value>/<owner key>   multi-valued index entry -> IndexEntry{owner key}
//	t/<expiry:16 hex>/<key>         expiry index: <key> expires at Unix-nano <expiry>
//	a/r/<seq:16 hex>                audit record seq (AuditRecord), seq starts at 1
//	a/c/<size:16 hex>               signed audit checkpoint over records 1..size
//	q/<sink name>                   how far an audit sink has shipped the log (audit_stream.go):
//	                                0x01, seq (8), h_seq (32), time written (8, Unix ns), big-endian
//
// No key holds a phone number or a card number in clear: keys end up in logs, error
// messages and the expiry index (t/ names the record's key), and are readable by anyone
// with a copy of the files. A record found by one is keyed by a fingerprint computed in the
// HSM instead (x/phone/<fingerprint>, x/bank-card/<user>.<fingerprint>). Schema version 2
// introduced this for phone numbers; daemon/accounts moves a version-1 store at start.
//
// Values of record kinds (u, e, k, c, o, s, b, v, y, z, i, n, h, l, p, w, r, x) are envelopes (envelope.go) around a
// storage protobuf message; audit keys (a/) hold bare AuditRecord / AuditCheckpoint
// messages; q/ values are the fixed layout above, written outside the audit chain like
// checkpoints; t/ values are empty. An index name is used either as a unique index or as a
// multi-valued one, never both.

// SchemaVersion is the version of this key layout and of the record envelope, stored in
// m/meta (the versions are listed in schemaversion.go). Open refuses a store written with a
// newer version.
const SchemaVersion = 3

// Kind is the first part of a key: what sort of record lives there.
type Kind string

// Record kinds. Domain records use these; the store's own bookkeeping uses the
// unexported kinds below.
const (
	KindUser       Kind = "u"
	KindEnterprise Kind = "e"
	KindKey        Kind = "k"
	KindCert       Kind = "c"
	KindOrder      Kind = "o"
	KindScan       Kind = "s"
	KindVerify     Kind = "v"
	KindSystem     Kind = "y"
	KindOpening    Kind = "b"
	KindAdmin      Kind = "z" // the admin surface's own records (package admin)
	KindInvoice    Kind = "i" // invoices and invoice titles (daemon/commerce/invoices)
	KindBankCard   Kind = "n" // bound bank cards (daemon/commerce/cards)
	KindSupport    Kind = "h" // help desk: feedback and replies (daemon/commerce/support)
	KindLedger     Kind = "l" // the double-entry ledger (daemon/commerce/ledger)
	KindPayment    Kind = "p" // payments in progress (daemon/commerce/payments)
	KindWallet     Kind = "w" // mutual-recognition accounts (daemon/commerce/wallet)
	KindAfterSales Kind = "r" // after-sales cases, r for returns (daemon/commerce/aftersales)
)

const (
	kindIndex Kind = "x"
	kindTTL   Kind = "t"
	kindAudit Kind = "a"
	kindMeta  Kind = "m"
	// kindSinkCursor holds audit sinks' delivery cursors (audit_stream.go).
	kindSinkCursor Kind = "q"

	metaKey          = "m/meta"
	auditRecordPfx   = "a/r/"
	auditCheckpointP = "a/c/"
	ttlPfx           = "t/"
	indexPfx         = "x/"
)

// MaxPartLen bounds one part of a key.
const MaxPartLen = 256

var recordKinds = map[Kind]bool{
	KindUser: true, KindEnterprise: true, KindKey: true, KindCert: true,
	KindOrder: true, KindScan: true, KindVerify: true, KindSystem: true, KindOpening: true, KindAdmin: true,
	KindInvoice:  true,
	KindBankCard: true,
	KindSupport:  true,
	KindLedger:   true, KindPayment: true,
	KindWallet:     true,
	KindAfterSales: true,
}

// ValidPart reports whether s may be used as one part of a key.
func ValidPart(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty key part", ErrInvalidKey)
	}
	if len(s) > MaxPartLen {
		return fmt.Errorf("%w: key part longer than %d bytes", ErrInvalidKey, MaxPartLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: key part is not UTF-8", ErrInvalidKey)
	}
	for _, r := range s {
		if r == '/' || r < 0x20 || r == 0x7f {
			// The part itself is not echoed: it may be personal data.
			return fmt.Errorf("%w: key part contains %q", ErrInvalidKey, r)
		}
	}
	return nil
}

// Key builds the key of a domain record: kind/part1/part2/...
func Key(kind Kind, parts ...string) (string, error) {
	if !recordKinds[kind] {
		return "", fmt.Errorf("%w: unknown record kind %q", ErrInvalidKey, kind)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("%w: record key without parts", ErrInvalidKey)
	}
	size := len(kind)
	for _, p := range parts {
		if err := ValidPart(p); err != nil {
			return "", err
		}
		size += 1 + len(p)
	}
	var b strings.Builder
	b.Grow(size) // one allocation: keys are built on every read and write
	b.WriteString(string(kind))
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(p)
	}
	return b.String(), nil
}

// validParts checks each '/'-separated part of path, without splitting it.
func validParts(path string) error {
	for {
		part, rest, more := strings.Cut(path, "/")
		if err := ValidPart(part); err != nil {
			return err
		}
		if !more {
			return nil
		}
		path = rest
	}
}

// checkRecordKey accepts keys that Key could have built.
func checkRecordKey(key string) error {
	kind, rest, ok := strings.Cut(key, "/")
	if !ok || !recordKinds[Kind(kind)] {
		return fmt.Errorf("%w: %q is not a record key", ErrInvalidKey, key)
	}
	return validParts(rest)
}

func uniqueIndexKey(index, value string) (string, error) {
	if err := ValidPart(index); err != nil {
		return "", err
	}
	if err := ValidPart(value); err != nil {
		return "", err
	}
	return indexPfx + index + "/" + value, nil
}

func multiIndexPrefix(index, value string) (string, error) {
	k, err := uniqueIndexKey(index, value)
	if err != nil {
		return "", err
	}
	return k + "/", nil
}

func hex16(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:])
}

func parseHex16(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[:]), true
}

func auditRecordKey(seq uint64) string      { return auditRecordPfx + hex16(seq) }
func auditCheckpointKey(size uint64) string { return auditCheckpointP + hex16(size) }

// ttlKey orders expiries before keys so the sweeper reads only what is due. Expiries
// before 1970 are clamped to 0.
func ttlKey(expiresUnixNano int64, key string) string {
	if expiresUnixNano < 0 {
		expiresUnixNano = 0
	}
	return ttlPfx + hex16(uint64(expiresUnixNano)) + "/" + key
}

// prefixEnd returns the smallest key greater than every key with the given prefix.
func prefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
