// Package keystore keeps the phone's halves of split SM2 keys on disk for the hufu SDK and
// CLI: for each key its share d1 (and, during a share refresh, the pending share), sealed
// under a device key, with the key's public data in clear.
//
// # Files
//
// A keystore is a directory (created 0700) holding one file per key, KEYID.json, mode 0600
// (and, while a process changes the key's shares, an empty lock file .KEYID.lock),
// and a device key file (by default DIR/device.key; it may live elsewhere), mode 0600, which
// holds 32 random bytes made on first use. A key file is JSON:
//
//	{
//	  "format":          "hufu-keystore/v1",
//	  "key_id":          "key-0123456789abcdef",
//	  "label":           "bids 2026",             (optional)
//	  "account_id":      "…",                     the account that owns the key
//	  "public_key":      "04…",                   hex, 65-byte uncompressed joint public key
//	  "share_version":   1,
//	  "share":           "…",                     base64 of nonce ‖ AES-256-GCM(d1 ‖ d1⁻¹)
//	  "pending_version": 2,                       (only during a share refresh)
//	  "pending_share":   "…"                      (only during a share refresh)
//	}
//
// Each sealed share is a fresh 12-byte random nonce followed by the GCM ciphertext and tag of
// the 64-byte share (cosign.PhoneShare.MarshalBinary). The associated data is
//
//	"hufu/keystore/v1 share" ‖ len32(key id) ‖ key id ‖ version (4 bytes, big-endian) ‖ public key
//
// so a sealed share moved to another key, or to another version of the same key, or
// presented with another public key, does not open. Writes are atomic: a temporary file in
// the same directory, written, synced, renamed over the old file, and the directory synced;
// a crash leaves the old file or the new one, never a mixture.
//
// # Threat model
//
// The device key is what turns a copy of the key files into nothing. It protects d1 against
//   - someone who copies the keystore directory (or a backup of it) without the device key
//     file: backups, sync folders and support bundles should exclude the device key, which
//     is why it can be kept outside the keystore directory;
//   - a key file swapped between keys or rolled back to another share version (the
//     associated data above);
//   - accidental disclosure in logs: shares print and log as [REDACTED], and nothing here
//     logs.
//
// It does not protect against anyone who can read both files as the user: malware running
// on the device, another process of the same user, root, or a backup that includes the
// device key. This package is the CLI and SDK keystore; a real phone keeps the device key in
// the Android Keystore or the iOS Secure Enclave, where it cannot be read out, and should
// use them instead of the device key file. Even a stolen d1 alone cannot sign or decrypt:
// the appliance's half is gated by the certificate PIN, the device binding and rate limits,
// and a share refresh (cosign, refresh) makes a stolen d1 useless.
package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hufu-hsm/hufu/cosign"
)

// Format is the value of every key file's "format" field.
const Format = "hufu-keystore/v1"

// DeviceKeySize is the length of the device key: an AES-256 key.
const DeviceKeySize = 32

const (
	nonceSize = 12
	adDomain  = "hufu/keystore/v1 share"
	fileExt   = ".json"
)

var (
	// ErrNotFound: the keystore holds no key with that id.
	ErrNotFound = errors.New("keystore: no such key")
	// ErrSealed: a share does not open under the device key, because the device key is not
	// the one it was sealed with, or the file was altered or moved to another key.
	ErrSealed = errors.New("keystore: share does not open (wrong device key, or the key file was altered)")
	// ErrKeyID: a key id is not 8 to 64 characters of [A-Za-z0-9._-] (the daemon's rule),
	// or starts with a dot.
	ErrKeyID = errors.New("keystore: invalid key id")
)

// Entry is one key as the phone holds it: the refresh state of package cosign (public key,
// share version, share, pending share) and the key's names.
type Entry struct {
	ID        string
	Label     string
	AccountID string
	cosign.PhoneKey
}

// Info is a key's public data, readable without the device key.
type Info struct {
	ID             string
	Label          string
	AccountID      string
	Public         cosign.Point
	Version        uint32
	PendingVersion uint32 // 0 when no refresh is pending
}

// Store is a keystore directory and its device key. Methods may be called concurrently;
// concurrent Saves of the same key leave one of them whole.
type Store struct {
	dir  string
	aead cipher.AEAD
}

// Open opens (creating if needed) the keystore in dir with the device key in deviceKeyFile
// (DIR/device.key when empty), creating the device key on first use. An existing device key
// file must be exactly DeviceKeySize bytes and readable by its owner only.
func Open(dir, deviceKeyFile string) (*Store, error) {
	if deviceKeyFile == "" {
		deviceKeyFile = filepath.Join(dir, "device.key")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	key, err := loadDeviceKey(deviceKeyFile)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return &Store{dir: dir, aead: aead}, nil
}

// loadDeviceKey reads the device key, or creates it: the new key is written to a temporary
// file, synced, and linked into place, so two processes creating it at once agree on one
// key and nobody reads a half-written one.
func loadDeviceKey(path string) ([]byte, error) {
	key, err := readDeviceKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	key = make([]byte, DeviceKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	tmp, err := writeTemp(filepath.Dir(path), ".device-key-*", key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	return readDeviceKey(path)
}

func readDeviceKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keystore: device key %s is readable by others (mode %v): make it 0600", path, st.Mode().Perm())
	}
	key, err := io.ReadAll(io.LimitReader(f, DeviceKeySize+1))
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("keystore: device key: %w", err)
	}
	if len(key) != DeviceKeySize {
		clear(key)
		return nil, fmt.Errorf("keystore: device key %s is not %d bytes", path, DeviceKeySize)
	}
	return key, nil
}

// Dir returns the keystore directory.
func (s *Store) Dir() string { return s.dir }

// file is the JSON form of a key file; see the package documentation.
type file struct {
	Format         string `json:"format"`
	KeyID          string `json:"key_id"`
	Label          string `json:"label,omitempty"`
	AccountID      string `json:"account_id"`
	PublicKey      string `json:"public_key"`
	ShareVersion   uint32 `json:"share_version"`
	Share          []byte `json:"share"`
	PendingVersion uint32 `json:"pending_version,omitempty"`
	PendingShare   []byte `json:"pending_share,omitempty"`
}

// ValidKeyID reports whether id may name a key: 8 to 64 characters of [A-Za-z0-9._-], not
// starting with a dot (so it is also a safe file name).
func ValidKeyID(id string) bool {
	if len(id) < 8 || len(id) > 64 || id[0] == '.' {
		return false
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}

func (s *Store) path(id string) (string, error) {
	if !ValidKeyID(id) {
		return "", fmt.Errorf("%w %q", ErrKeyID, id)
	}
	return filepath.Join(s.dir, id+fileExt), nil
}

// Save writes the entry atomically, sealing its share and pending share.
func (s *Store) Save(e *Entry) error {
	path, err := s.path(e.ID)
	if err != nil {
		return err
	}
	if e.Share == nil {
		return errors.New("keystore: entry has no share")
	}
	f := file{
		Format: Format, KeyID: e.ID, Label: e.Label, AccountID: e.AccountID,
		PublicKey: hex.EncodeToString(e.Public[:]), ShareVersion: e.Version,
	}
	if f.Share, err = s.seal(e.ID, e.Version, &e.Public, e.Share); err != nil {
		return err
	}
	if p := e.Pending; p != nil {
		if p.Version == e.Version {
			return errors.New("keystore: pending share has the active share's version")
		}
		f.PendingVersion = p.Version
		if f.PendingShare, err = s.seal(e.ID, p.Version, &e.Public, p.Share); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	tmp, err := writeTemp(s.dir, "."+e.ID+".*", append(b, '\n'))
	if err != nil {
		return fmt.Errorf("keystore: save %s: %w", e.ID, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keystore: save %s: %w", e.ID, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("keystore: save %s: %w", e.ID, err)
	}
	return nil
}

// Load reads a key and opens its shares.
func (s *Store) Load(id string) (*Entry, error) {
	f, err := s.read(id)
	if err != nil {
		return nil, err
	}
	info, err := f.info()
	if err != nil {
		return nil, err
	}
	e := &Entry{ID: info.ID, Label: info.Label, AccountID: info.AccountID}
	e.Public, e.Version = info.Public, info.Version
	if e.Share, err = s.open(id, f.ShareVersion, &e.Public, f.Share); err != nil {
		return nil, err
	}
	if f.PendingVersion != 0 {
		pending, err := s.open(id, f.PendingVersion, &e.Public, f.PendingShare)
		if err != nil {
			e.Share.Destroy()
			return nil, err
		}
		e.Pending = &cosign.PhonePending{Version: f.PendingVersion, Share: pending}
	}
	return e, nil
}

// Stat reads a key's public data without opening its shares.
func (s *Store) Stat(id string) (Info, error) {
	f, err := s.read(id)
	if err != nil {
		return Info{}, err
	}
	return f.info()
}

// List returns the public data of every key, ordered by id.
func (s *Store) List() ([]Info, error) {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var out []Info
	for _, n := range names {
		id, ok := strings.CutSuffix(n.Name(), fileExt)
		if !ok || !n.Type().IsRegular() || !ValidKeyID(id) {
			continue
		}
		info, err := s.Stat(id)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Lock takes the key's lock, waiting for another process (or goroutine) that holds it, and
// returns the function that releases it. Callers that read a key, talk to the appliance and
// write the key back (a share refresh) hold it throughout, so two of them do not interleave.
// The lock is advisory and released if the process dies.
func (s *Store) Lock(id string) (unlock func(), err error) {
	if _, err := s.path(id); err != nil {
		return nil, err
	}
	return lockFile(filepath.Join(s.dir, "."+id+".lock"))
}

// Delete removes a key file. The share is gone for good: only do this for a key the
// appliance has revoked.
func (s *Store) Delete(id string) error {
	path, err := s.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return fmt.Errorf("keystore: %w", err)
	}
	return syncDir(s.dir)
}

func (s *Store) read(id string) (*file, error) {
	path, err := s.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("keystore: %s: format %q, want %q", path, f.Format, Format)
	}
	if f.KeyID != id {
		return nil, fmt.Errorf("keystore: %s holds key %q", path, f.KeyID)
	}
	return &f, nil
}

func (f *file) info() (Info, error) {
	info := Info{ID: f.KeyID, Label: f.Label, AccountID: f.AccountID, Version: f.ShareVersion, PendingVersion: f.PendingVersion}
	raw, err := hex.DecodeString(f.PublicKey)
	if err != nil {
		return info, fmt.Errorf("keystore: key %s: public key: %w", f.KeyID, err)
	}
	if info.Public, err = cosign.ParsePoint(raw); err != nil {
		return info, fmt.Errorf("keystore: key %s: public key: %w", f.KeyID, err)
	}
	return info, nil
}

func additionalData(id string, version uint32, public *cosign.Point) []byte {
	ad := make([]byte, 0, len(adDomain)+4+len(id)+4+cosign.PointSize)
	ad = append(ad, adDomain...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(id)))
	ad = append(ad, id...)
	ad = binary.BigEndian.AppendUint32(ad, version)
	return append(ad, public[:]...)
}

func (s *Store) seal(id string, version uint32, public *cosign.Point, share *cosign.PhoneShare) ([]byte, error) {
	plain, err := share.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	defer clear(plain)
	out := make([]byte, nonceSize, nonceSize+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return s.aead.Seal(out, out, plain, additionalData(id, version, public)), nil
}

func (s *Store) open(id string, version uint32, public *cosign.Point, sealed []byte) (*cosign.PhoneShare, error) {
	if len(sealed) < nonceSize+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: key %s version %d", ErrSealed, id, version)
	}
	plain, err := s.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], additionalData(id, version, public))
	if err != nil {
		return nil, fmt.Errorf("%w: key %s version %d", ErrSealed, id, version)
	}
	defer clear(plain)
	share, err := cosign.ParsePhoneShare(plain)
	if err != nil {
		return nil, fmt.Errorf("keystore: key %s version %d: %w", id, version, err)
	}
	return share, nil
}

// writeTemp writes b to a new 0600 file in dir, synced and closed, and returns its name.
func writeTemp(dir, pattern string, b []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern) // CreateTemp makes the file 0600
	if err != nil {
		return "", err
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", werr
	}
	return f.Name(), nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
