// Package store is hufu's persistent state: users, enterprises, keys and wrapped shares,
// certificates, orders and scan sessions as typed protobuf records in an embedded Pebble
// database, and the tamper-evident audit log that records every change to them.
//
// The package gives domain code four guarantees it can build on:
//
//   - Atomic, durable, audited changes. [Store.Update] runs a read-modify-write function
//     under per-key locks and commits every write it made (records, index entries, TTL
//     entries) together with the audit records it appended in one Pebble batch, synced to
//     the WAL before Update returns. A change without its audit record cannot exist; a
//     change whose audit record cannot be written is refused (fail closed).
//   - Serialised writers per key. Two Updates that touch the same key run one after the
//     other; Updates on disjoint keys run in parallel and their syncs are grouped by Pebble's
//     commit pipeline. Unique indexes ([Tx.Claim]) therefore hold under concurrency.
//   - Expiring records. A record written with an expiry is invisible from that instant
//     (by the injected [Clock]) even before [Store.Sweep] deletes it.
//   - A verifiable history. Audit record i carries h_i = SM3(h_{i-1} || canonical bytes of
//     record i); signed checkpoints (size, head hash, time) are written every N records or T
//     seconds through a [Signer]; [Store.ExportAudit] writes any range as JSON lines and
//     [VerifyExport] checks such an export offline against the checkpoint public key,
//     naming the first bad record and the reason.
//
// The key layout is documented in schema.go, the record envelope in envelope.go, and the
// audit record, checkpoint and export formats in audit_format.go. Storage messages are in
// store/proto/hufu/store/v1 (Go: package storepb); they are versioned independently of the
// public API.
package store
