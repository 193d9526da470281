// Package admin is hufu's admin HTTP surface, served on its own listener (loopback by
// default, TLS optional) for the people who run, check and hold the keys of an appliance:
//
//	endpoint                          method  roles
//	/livez                            GET     anyone (no token)
//	/readyz[?verbose]                 GET     anyone; check errors only with a token
//	/metrics                          GET     operator, security_officer
//	/audit/export[?from=N&to=M]       GET     auditor, security_officer
//	/audit/checkpoints[?after&limit]  GET     auditor, security_officer
//	/audit/public-key                 GET     operator, auditor, security_officer
//	/backup                           POST    operator, security_officer
//	/kek                              GET     security_officer
//	/kek/rotate                       POST    security_officer
//	/kek/finish                       POST    security_officer
//	/system-clients                   GET     operator, security_officer
//	/system-clients                   POST    operator, security_officer
//	/system-clients/{name}            DELETE  operator, security_officer
//	/debug/pprof/...                  GET     security_officer
//
// Callers present "Authorization: Bearer <token>". The configuration holds only each
// token's SHA-256, its holder's name (the token id in audit records) and its role;
// NewToken makes a token and the hash to configure. A missing or unknown token is 401, a
// token whose role may not use the endpoint 403.
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
// versions in the HSM. Backups taken before the finish refer to the destroyed KEKs and
// can no longer be opened: take a new backup after it.
//
// The rotation knows the stored blobs only through its Rewrappers (daemon/admin.go: split
// key shares and refresh offers, sealed ID numbers, the embedded CAs' keys). Code that
// stores a new kind of wrapped blob must add its Rewrapper, or finish would destroy the
// KEK that blob needs.
//
// # System clients
//
// POST /system-clients {"name": ..., "services": ["hufu.v1.ReviewService", ...]} registers a
// business or bid-opening system: its permissions are stored (and audited in the same
// batch) and take effect at once for a client certificate whose common name is name. In
// development the daemon issues that certificate with its development CA and returns it
// with its private key, once; in production the deployment's client CA issues it. Systems
// in the configuration's system_clients are listed but cannot be changed here.
//
// # Backups
//
// POST /backup writes a Pebble checkpoint of the store (a consistent snapshot, with a
// signed audit checkpoint over the whole log first) to a scratch directory next to the
// store and streams it as a tar archive of "store/<file>" entries; the scratch copy is
// removed afterwards. Restoring is extracting the archive into an empty data directory
// (tar -xf backup.tar -C <data_dir>) and starting hufud with the same HSM token.
package admin
