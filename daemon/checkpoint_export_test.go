package daemon

// AwaitCheckpoint returns once no audit checkpoint is being written in the background
// (store.Options.CheckpointInBackground): a test that reads the HSM session pool right after
// a write waits for it first, as the checkpoint holds a session while it signs.
func (d *Daemon) AwaitCheckpoint() { d.store.LastCheckpoint() }
