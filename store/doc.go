// Package store is hufu's persistent state: users, enterprises, keys with their wrapped
// shares and members' delegated share pairs, certificates, orders and scan sessions as typed
// protobuf records in an embedded Pebble database, and the tamper-evident audit log that
// records every change to them.
//
// The package gives domain code four guarantees it can build on:
//
//   - Atomic, durable, audited changes. [Store.Update] runs a read-modify-write function
//     under per-key locks and commits every write it made (records, index entries, expiry
//     entries) together with the audit records it appended in one Pebble batch, synced to
//     the WAL before Update returns. A change without its audit record cannot exist: an
//     Update that writes but appends no event is refused ([ErrUnaudited]), and an audit
//     record that cannot be written fails the whole change (fail closed).
//   - Serialised writers per key. Two Updates that touch the same key run one after the
//     other; Updates on disjoint keys run in parallel and their WAL syncs are grouped by
//     Pebble's commit pipeline. Unique indexes ([Tx.Claim]) therefore hold under
//     concurrency.
//   - Expiring records. A record written with [ExpiresAt] is invisible from that instant
//     (by the injected [Clock]) even before [Store.Sweep] deletes it.
//   - A verifiable history. Audit record i carries h_i = SM3(h_{i-1} || canonical bytes of
//     record i); signed checkpoints (size, head hash, time) are written every N records or
//     T seconds through a [Signer]; [Store.ExportAudit] writes any range as JSON lines and
//     [VerifyExport] checks such an export offline against the checkpoint public key,
//     naming the first bad record and the reason ([VerifyError]).
//
// # Transactions
//
// A transaction locks each key when it first reads or writes it, and only with a
// non-blocking try-lock: if the key is held, the transaction is rolled back, every key it
// knows about is locked in bytewise order (blocking; the same canonical order for
// everybody, so no deadlock), and the function runs again. The function must therefore be
// free of outside effects. Keys stay locked until the batch is durable, so nobody ever
// reads a value that a crash could take back.
//
// Audit sequence numbers are global, so appends are serialised: under one mutex the
// committer assigns sequence numbers, computes the hashes (about 2 µs per record) and
// hands the batch to Pebble's commit pipeline (WAL append and memtable, no fsync). The
// fsync is awaited after the mutex is released, where the batches of all concurrent
// writers share one sync. WAL order is therefore sequence order: a crash can only lose a
// suffix of the log together with the changes it records.
//
// # Failure model
//
// Pebble cannot continue after a WAL write or sync error (see fault_test.go for what it
// does). The first such error puts the store in a failed state: every later operation
// returns [ErrFailed] and the cure is Close and Open, which recovers exactly the batches
// that reached the WAL, whole. Signing failures do not fail appends: the records are
// chained and durable, and the next checkpoint covers them.
//
// # What verification proves
//
// A record covered by a valid checkpoint (VerifyResult.VerifiedThrough) is proven
// unchanged, in place and complete up to that checkpoint. Records after the last
// checkpoint are only chained: whoever can write the database could rewrite them
// undetected, so exports to the head write a fresh checkpoint first, and the daemon runs
// [Store.RunCheckpointer]. Deleting the newest records together with every checkpoint
// after them is only visible against a checkpoint or export that an auditor kept.
//
// The key layout is documented in schema.go, the record envelope in envelope.go, and the
// audit record, checkpoint and export formats in audit_format.go. Storage messages are in
// store/proto/hufu/store/v1 (Go: package storepb); they are versioned independently of the
// public API, and generated code is refreshed with scripts/proto.sh.
package store
