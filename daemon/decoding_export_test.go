package daemon

// UndecodableNotes is how many notes of undecodable requests are waiting to be taken: 0
// whenever no call is in flight.
func (d *Daemon) UndecodableNotes() int {
	n := 0
	d.undecodable.byMessage.Range(func(any, any) bool { n++; return true })
	return n
}
