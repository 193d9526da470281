package daemon

// Test hooks for the external tests (package daemon_test).

// SystemClientAllowed is the gate's check for system clients registered at run time.
func (d *Daemon) SystemClientAllowed(name, service string) bool {
	return d.adm.systems.allowed(name, service)
}

// SetSystemClientCommitHook runs f between a registration's or removal's commit and the
// update of the gate's table.
func (d *Daemon) SetSystemClientCommitHook(f func(name string)) {
	if f == nil {
		d.adm.systems.afterCommit.Store(nil)
		return
	}
	d.adm.systems.afterCommit.Store(&f)
}
