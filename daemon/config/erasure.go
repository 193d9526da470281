package config

import "time"

// KEKErasure is keys.erasure: how often the KEK erasure runs (admin/erasure.go). Revoking a
// key deletes its server share from the live store at once; the erasure is what makes the
// deleted share unrecoverable from the store's old files and from backups: it rewraps every
// live blob under a new KEK, compacts the store, and destroys the old KEK in the HSM. Every
// backup taken before an erasure can no longer be restored after it.
type KEKErasure struct {
	// Interval between erasures, counted from the last one (or from the store's creation);
	// 0s turns the schedule off, leaving only `hufu admin kek erase`. Default 168h (weekly);
	// a development configuration (Development) starts with 0s.
	Interval Duration `yaml:"interval"`
}

// DefaultErasureInterval is keys.erasure.interval's default: a revocation is final within a
// week.
const DefaultErasureInterval = 7 * 24 * time.Hour

// Bounds of keys.erasure.interval: more often than hourly would rewrap the whole store for
// little; less often than quarterly leaves revoked shares recoverable from old backups too
// long.
const (
	minErasureInterval = time.Hour
	maxErasureInterval = 90 * 24 * time.Hour
)

func (e KEKErasure) validate(bad func(path, format string, args ...any)) {
	if d := e.Interval.Std(); d != 0 && (d < minErasureInterval || d > maxErasureInterval) {
		bad("keys.erasure.interval", "%s: want 0s (no schedule) or %s..%s", d, minErasureInterval, maxErasureInterval)
	}
}
