// Package admin is hufu's admin HTTP surface, served on its own listener (loopback by
// default, TLS optional) for the people who run, check and hold the keys of an appliance:
//
//	endpoint                          method  roles
//	/livez                            GET     anyone (no token)
//	/readyz[?verbose]                 GET     anyone; check errors only with a token
//	/crl/{ca}                         GET     anyone (relying parties)
//	/metrics                          GET     metrics_reader, operator, security_officer
//	/audit/export[?from=N&to=M]       GET     auditor, security_officer
//	/audit/checkpoints[?after&limit]  GET     auditor, security_officer
//	/audit/public-key                 GET     operator, auditor, security_officer
//	/backup                           POST    security_officer
//	/tokens                           GET     security_officer
//	/tokens                           POST    security_officer (a security_officer token: + a second officer)
//	/tokens/{name}                    DELETE  security_officer
//	/approvals[?state=...]            GET     security_officer
//	/approvals/{id}/approve           POST    security_officer other than the one who asked
//	/approvals/{id}/reject            POST    security_officer
//	/kek                              GET     security_officer
//	/kek/rotate                       POST    security_officer
//	/kek/finish                       POST    security_officer
//	/kek/erase                        POST    security_officer
//	/system-clients                   GET     operator, security_officer
//	/system-clients                   POST    security_officer (a desk service: + a second officer)
//	/system-clients/{name}            DELETE  security_officer
//	/ca/revoke-issuing                POST    security_officer, + a second officer
//	/debug/pprof/...                  GET     security_officer
//	/console/...                      GET/POST the operator console (package admin/console): a session cookie
//
// Callers present "Authorization: Bearer <token>". A token comes from the configuration
// (admin.tokens: only each token's SHA-256, its holder's name — the token id in audit
// records — and its role; NewToken makes a token and the hash to configure), or is created
// online (tokens.go). A missing, unknown, expired or revoked token is 401, a token whose
// role may not use the endpoint 403. Package adminclient is the Go client of every
// endpoint.
//
// # Roles and duties
//
// metrics_reader is what a monitoring system holds: /metrics and nothing else. Backups
// (they hold every phone number), system clients and admin tokens (they grant access) are
// the security officer's alone. Two grants need a second security officer (approvals.go):
// a system client for a desk service (DeskOf: the review and reconciliation desks, the
// payment and after-sales desks when their services exist), and a security_officer token
// made online. Such a change is stored as an approval request, which another officer —
// not the asker, and not with a token the asker made — approves within
// Options.ApprovalTTL; the decision and the change are one store batch with their audit
// records.
//
// # Online tokens
//
// POST /tokens {"name", "role", "expires_in": "720h"} makes a token, stores its SHA-256 at
// z/token/<name> (storepb.AdminToken) with the audit record in the same batch, and answers
// with the token once. Names are unique across the configuration and the stored tokens;
// Options.MaxTokens and MaxTokenTTL bound them. Revocation (DELETE) and expiry (by the
// injected clock) refuse a token at once: authentication reads an in-memory mirror that
// every committed change updates. Configured tokens are listed but changed only in the
// configuration.
//
// # Metrics
//
// With Options.Registerer the surface registers hufu_ready, hufu_readiness_check{check},
// and the KEK gauges hufu_kek_current_version, hufu_kek_versions,
// hufu_kek_rotation_running, hufu_kek_rotation_rewrapped_blobs{domain} and
// hufu_kek_rotation_remaining_records{domain}, hufu_kek_last_erasure_timestamp_seconds and
// hufu_kek_erasure_due_timestamp_seconds, computed at each scrape (metrics.go).
//
// Every admin action is audited with the role and the token's name: requests other than
// probes and metric scrapes are recorded (actor "admin:<name>", details "role" and
// "token"), refusals included, and an endpoint that changes or exports something records
// it before it acts (fail closed: no audit record, no action).
//
// # KEK rotation
//
// POST /kek/rotate creates the next KEK version in the HSM (it becomes current at once, so
// every new wrap uses it) and starts a background job that rewraps every stored blob still
// under an older KEK, key by key in short locked transactions, while the daemon serves.
// GET /kek shows the KEK versions and the job's progress. POST /kek/finish, the explicit
// final call, sweeps once more (a blob wrapped by a request that raced the rotation),
// checks that no stored blob refers to an old KEK, and only then destroys the old KEK
// versions in the HSM, each recorded in the audit log before ("started") and after ("ok")
// its destruction; if either record cannot be written the finish stops there (503, naming
// what was destroyed) and destroys nothing more. Backups taken before the finish refer to the destroyed KEKs and
// can no longer be opened: take a new backup after it.
//
// The rotation knows the stored blobs only through its Rewrappers (daemon/admin.go: split
// key shares and refresh offers, sealed ID numbers, the embedded CAs' keys). Code that
// stores a new kind of wrapped blob must add its Rewrapper, or finish would destroy the
// KEK that blob needs.
//
// # KEK erasure
//
// POST /kek/erase (and the schedule, Options.ErasureInterval) runs rotate, rewrap, the
// count, a compaction of the whole store and the destruction of the old KEKs as one audited
// step, resumable from the token's state: it makes revoked shares unrecoverable from the
// store's old files and from backups, and every earlier backup unrestorable (erasure.go).
//
// # System clients
//
// POST /system-clients {"name": ..., "services": ["hufu.v1.ScanService", ...]} registers a
// business or bid-opening system: its permissions are stored (and audited in the same
// batch) and take effect at once for a client certificate whose common name is name. With
// a desk among the services the answer is 202 and an approval request instead; the
// registration happens when a second officer approves it. A service without methods for
// system clients (only phones call it) is refused. In development the daemon issues the
// certificate with its development CA and returns it with its private key, once (to the
// approving officer, for a desk); in production the deployment's client CA issues it.
// Systems in the configuration's system_clients are listed but cannot be changed here.
//
// # Backups
//
// POST /backup writes a Pebble checkpoint of the store (a consistent snapshot, with a
// signed audit checkpoint over the whole log first) to a scratch directory next to the
// store and streams it as a tar archive of "store/<file>" entries, encrypted under a fresh
// data key that the HSM wraps under the current KEK (package backup, format version 1); the
// scratch copy is removed afterwards. Restoring is hufud restore on the appliance, offline,
// with the same HSM token while that KEK is on it (docs/operations.md).
package admin
