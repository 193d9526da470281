package keystore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
)

// newEntry runs key generation in process (both halves here, on purpose) and returns the
// phone's half as an entry.
func newEntry(t *testing.T, id string) *keystore.Entry {
	t.Helper()
	ctx := cosign.KeygenContext("account-1", id)
	phone, req, err := cosign.StartKeygen(rand.Reader, ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, resp, err := cosign.ServerKeygen(rand.Reader, ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	share, public, err := phone.Finish(resp)
	if err != nil {
		t.Fatal(err)
	}
	return &keystore.Entry{ID: id, Label: "test", AccountID: "account-1",
		PhoneKey: cosign.PhoneKey{Public: public, Version: 1, Share: share}}
}

func shareBytes(t *testing.T, s *cosign.PhoneShare) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func open(t *testing.T, dir, deviceKey string) *keystore.Store {
	t.Helper()
	ks, err := keystore.Open(dir, deviceKey)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestRoundTripAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ks := open(t, dir, "")
	e := newEntry(t, "key-0000000000000001")
	if err := ks.Save(e); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "device.key"), filepath.Join(dir, e.ID+".json")} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, m)
		}
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %v, want 0700", m)
	}

	// A second Open finds the same device key and opens the share.
	got, err := open(t, dir, "").Load(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Public != e.Public || got.Version != 1 || got.Label != "test" || got.AccountID != "account-1" || got.Pending != nil {
		t.Fatalf("loaded %+v", got)
	}
	if !bytes.Equal(shareBytes(t, got.Share), shareBytes(t, e.Share)) {
		t.Fatal("share changed in the round trip")
	}

	// The key file holds no share in clear and prints no secret.
	raw, _ := os.ReadFile(filepath.Join(dir, e.ID+".json"))
	if bytes.Contains(raw, shareBytes(t, e.Share)[:16]) {
		t.Fatal("share in clear in the key file")
	}

	// A pending share round-trips too, and List shows the public data.
	next, _, err := e.AcceptOffer([]byte(e.ID), &cosign.RefreshOffer{Version: 2, Rho: [32]byte{31: 7}})
	if err != nil {
		t.Fatal(err)
	}
	e.PhoneKey = next
	if err := ks.Save(e); err != nil {
		t.Fatal(err)
	}
	got, err = ks.Load(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pending == nil || got.Pending.Version != 2 || !bytes.Equal(shareBytes(t, got.Pending.Share), shareBytes(t, e.Pending.Share)) {
		t.Fatal("pending share lost")
	}
	list, err := ks.List()
	if err != nil || len(list) != 1 || list[0].ID != e.ID || list[0].PendingVersion != 2 || list[0].Public != e.Public {
		t.Fatalf("list: %+v %v", list, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	if err := ks.Delete(e.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Load(e.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestWrongDeviceKeyFails(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	ks := open(t, dir, filepath.Join(base, "device-a.key"))
	e := newEntry(t, "key-0000000000000002")
	if err := ks.Save(e); err != nil {
		t.Fatal(err)
	}
	// The keystore copied without its device key: a new device key is made, and the share
	// does not open under it.
	other := open(t, dir, filepath.Join(base, "device-b.key"))
	if _, err := other.Load(e.ID); !errors.Is(err, keystore.ErrSealed) {
		t.Fatalf("wrong device key: %v", err)
	}
	// The public data stays readable.
	if info, err := other.Stat(e.ID); err != nil || info.Public != e.Public {
		t.Fatalf("stat: %+v %v", info, err)
	}
}

func TestSealedShareIsBoundToKeyAndVersion(t *testing.T) {
	dir := t.TempDir()
	ks := open(t, dir, "")
	a, b := newEntry(t, "key-aaaaaaaaaaaaaaaa"), newEntry(t, "key-bbbbbbbbbbbbbbbb")
	for _, e := range []*keystore.Entry{a, b} {
		if err := ks.Save(e); err != nil {
			t.Fatal(err)
		}
	}
	read := func(id string) string {
		raw, err := os.ReadFile(filepath.Join(dir, id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	write := func(id, s string) {
		if err := os.WriteFile(filepath.Join(dir, id+".json"), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	field := func(s, name string) string {
		i := strings.Index(s, `"`+name+`": `)
		j := strings.Index(s[i:], "\n")
		return s[i : i+j]
	}
	aFile, bFile := read(a.ID), read(b.ID)

	tests := []struct {
		name   string
		mutate func(string) string
	}{
		{"share of another key", func(s string) string {
			return strings.Replace(s, field(s, "share"), field(bFile, "share"), 1)
		}},
		{"other version", func(s string) string {
			return strings.Replace(s, `"share_version": 1`, `"share_version": 7`, 1)
		}},
		{"other public key", func(s string) string {
			return strings.Replace(s, field(s, "public_key"), field(bFile, "public_key"), 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(a.ID, tt.mutate(aFile))
			if _, err := ks.Load(a.ID); !errors.Is(err, keystore.ErrSealed) {
				t.Fatalf("got %v, want ErrSealed", err)
			}
		})
	}
	write(a.ID, aFile)
	if _, err := ks.Load(a.ID); err != nil {
		t.Fatalf("restored file: %v", err)
	}
}

func TestDeviceKeyChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "device.key")
	if err := os.WriteFile(path, make([]byte, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(dir, path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable device key: %v", err)
	}
	if err := os.WriteFile(path, make([]byte, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
	if _, err := keystore.Open(dir, path); err == nil || !strings.Contains(err.Error(), "not 32 bytes") {
		t.Fatalf("short device key: %v", err)
	}
}

func TestConcurrentOpenAgreesOnOneDeviceKey(t *testing.T) {
	dir := t.TempDir()
	e := newEntry(t, "key-cccccccccccccccc")
	stores := make([]*keystore.Store, 8)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			ks, err := keystore.Open(dir, "")
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = ks
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := stores[0].Save(e); err != nil {
		t.Fatal(err)
	}
	for i, ks := range stores {
		if _, err := ks.Load(e.ID); err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
}

func TestInvalidKeyIDs(t *testing.T) {
	ks := open(t, t.TempDir(), "")
	for _, id := range []string{"short", "../../etc/passwd", ".hidden-key-id", "key with space", strings.Repeat("k", 65)} {
		if _, err := ks.Load(id); !errors.Is(err, keystore.ErrKeyID) {
			t.Errorf("%q: %v", id, err)
		}
	}
}

func TestLockExcludes(t *testing.T) {
	ks := open(t, t.TempDir(), "")
	unlock, err := ks.Lock("key-dddddddddddddddd")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := ks.Lock("key-dddddddddddddddd")
		if err != nil {
			t.Error(err)
		} else {
			u()
		}
		close(got)
	}()
	other, err := ks.Lock("key-eeeeeeeeeeeeeeee") // another key's lock is independent
	if err != nil {
		t.Fatal(err)
	}
	other()
	select {
	case <-got:
		t.Fatal("a second holder took the lock")
	default:
	}
	unlock()
	<-got
	if _, err := ks.Lock("../escape"); !errors.Is(err, keystore.ErrKeyID) {
		t.Fatalf("lock with a bad id: %v", err)
	}
}
