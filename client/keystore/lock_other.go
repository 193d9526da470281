//go:build !unix

package keystore

import "sync"

// Without flock the lock only excludes this process's goroutines.
var locks sync.Map

func lockFile(path string) (func(), error) {
	mu, _ := locks.LoadOrStore(path, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock, nil
}
