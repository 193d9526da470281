//go:build cgo

package softhsm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// provisionMu serialises Provision: it sets a process-wide environment variable and may
// initialise and finalise the module, neither of which may interleave.
var provisionMu sync.Mutex

// Provision prepares opts.Dir (configuration, token directory), points SOFTHSM2_CONF at it
// and makes sure a token labelled opts.Label exists with a user PIN, stored in a 0600 file.
// It is idempotent: a second call finds the token the first one made and returns
// Created == false.
//
// SOFTHSM2_CONF stays set when Provision returns, so that a later C_Initialize in this
// process (crypto11's, when an hsm.Keyring opens) reads the same configuration. See the
// package documentation for how Provision shares the module with an open keyring.
func Provision(opts Options) (*Token, error) {
	if err := validateLabel(opts.Label); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("softhsm: Options.Dir is empty")
	}
	module, err := FindModule(opts.ModulePath)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("softhsm: directory: %w", err)
	}
	if opts.Existing {
		if err := checkTokenDir(filepath.Join(dir, "tokens"), filepath.Join(dir, "softhsm2.conf")); err != nil {
			return nil, err
		}
	}
	confPath, err := writeConfig(dir)
	if err != nil {
		return nil, err
	}
	tok := &Token{
		ModulePath: module,
		ConfigPath: confPath,
		Label:      opts.Label,
		PINFile:    filepath.Join(dir, opts.Label+".pin"),
		SOPINFile:  filepath.Join(dir, opts.Label+".so-pin"),
	}

	provisionMu.Lock()
	defer provisionMu.Unlock()

	prevConf, hadConf := os.LookupEnv(EnvConfig)
	if err := os.Setenv(EnvConfig, confPath); err != nil {
		return nil, fmt.Errorf("softhsm: set %s: %w", EnvConfig, err)
	}
	p := pkcs11.New(module)
	if p == nil {
		restoreEnv(prevConf, hadConf)
		return nil, fmt.Errorf("softhsm: cannot load PKCS#11 module %s", module)
	}
	defer p.Destroy()

	switch err := p.Initialize(); {
	case err == nil:
		// We own this initialisation; finalise it so crypto11 can initialise the module
		// itself later (it refuses CKR_CRYPTOKI_ALREADY_INITIALIZED).
		defer func() { _ = p.Finalize() }()
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
		// Someone in this process (an open keyring) holds the module. Its configuration
		// is whatever SOFTHSM2_CONF said when it initialised, which we can only check
		// against the value we found.
		if !hadConf || prevConf != confPath {
			restoreEnv(prevConf, hadConf)
			return nil, fmt.Errorf("softhsm: want %s=%s, module initialised with %q: %w", EnvConfig, confPath, prevConf, ErrConfigInUse)
		}
	default:
		restoreEnv(prevConf, hadConf)
		return nil, fmt.Errorf("softhsm: C_Initialize %s: %w", module, err)
	}

	_, info, found, err := findToken(p, opts.Label)
	if err != nil {
		return nil, err
	}
	if found {
		for _, f := range []string{tok.PINFile, tok.SOPINFile} {
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("softhsm: token %q exists but its PIN file is unusable: %w", opts.Label, err)
			}
		}
		tok.Serial = info.SerialNumber
		return tok, nil
	}
	if opts.Existing {
		return nil, fmt.Errorf("%w: no token labelled %q in %s (restore the directory, or run hufud init for a new appliance)",
			ErrTokenDir, opts.Label, filepath.Join(dir, "tokens"))
	}

	userPIN, err := loadOrCreatePIN(tok.PINFile)
	if err != nil {
		return nil, err
	}
	soPIN, err := loadOrCreatePIN(tok.SOPINFile)
	if err != nil {
		return nil, err
	}
	slot, err := freeSlot(p)
	if err != nil {
		return nil, err
	}
	if err := p.InitToken(slot, soPIN, opts.Label); err != nil {
		return nil, fmt.Errorf("softhsm: C_InitToken %q: %w", opts.Label, err)
	}
	// SoftHSM2 may move an initialised token to a slot numbered after its serial, so look
	// it up again by label rather than trusting the slot we initialised.
	slot, info, found, err = findToken(p, opts.Label)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("softhsm: token %q not visible after C_InitToken", opts.Label)
	}
	if err := initUserPIN(p, slot, soPIN, userPIN); err != nil {
		return nil, fmt.Errorf("softhsm: token %q: %w", opts.Label, err)
	}
	tok.Serial = info.SerialNumber
	tok.Created = true
	return tok, nil
}

func restoreEnv(prev string, had bool) {
	if had {
		_ = os.Setenv(EnvConfig, prev)
	} else {
		_ = os.Unsetenv(EnvConfig)
	}
}

// writeConfig creates dir and its token directory and writes the configuration unless it
// already has the right content, so that a second Provision touches nothing.
func writeConfig(dir string) (string, error) {
	tokenDir := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		return "", fmt.Errorf("softhsm: create token directory: %w", err)
	}
	confPath := filepath.Join(dir, "softhsm2.conf")
	want := []byte(configText(tokenDir))
	if have, err := os.ReadFile(confPath); err == nil && bytes.Equal(have, want) {
		return confPath, nil
	}
	if err := writeFileAtomic(confPath, want); err != nil {
		return "", fmt.Errorf("softhsm: write configuration: %w", err)
	}
	return confPath, nil
}

// findToken returns the slot of the initialised token labelled label. Two tokens with the
// same label would make every later lookup ambiguous, so that is an error.
func findToken(p *pkcs11.Ctx, label string) (slot uint, info pkcs11.TokenInfo, found bool, err error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, info, false, fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			return 0, info, false, fmt.Errorf("softhsm: C_GetTokenInfo: %w", err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 || ti.Label != label {
			continue
		}
		if found {
			return 0, info, false, fmt.Errorf("softhsm: two tokens are labelled %q", label)
		}
		slot, info, found = s, ti, true
	}
	return slot, info, found, nil
}

// freeSlot returns a slot whose token is not initialised yet; SoftHSM2 always keeps one.
func freeSlot(p *pkcs11.Ctx) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			return 0, fmt.Errorf("softhsm: C_GetTokenInfo: %w", err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			return s, nil
		}
	}
	return 0, errors.New("softhsm: no uninitialised slot left")
}

// initUserPIN logs in as security officer on a fresh token and sets the user PIN. Only the
// new token's login state changes, so a keyring open on another token is unaffected.
func initUserPIN(p *pkcs11.Ctx, slot uint, soPIN, userPIN string) error {
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer func() { _ = p.CloseSession(sh) }()
	if err := p.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("C_Login as SO: %w", err)
	}
	defer func() { _ = p.Logout(sh) }()
	if err := p.InitPIN(sh, userPIN); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return nil
}

// loadOrCreatePIN reuses a PIN file left by an earlier run (so a half-finished provision
// can be repeated) or writes a new random PIN. Random PINs are 32 hex digits: comfortably
// inside SoftHSM2's 4..255 length range.
func loadOrCreatePIN(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return readPIN(path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("softhsm: PIN file: %w", err)
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("softhsm: generate PIN: %w", err)
	}
	pin := hex.EncodeToString(raw)
	if err := writeFileAtomic(path, []byte(pin+"\n")); err != nil {
		return "", fmt.Errorf("softhsm: write PIN file: %w", err)
	}
	return pin, nil
}

// writeFileAtomic writes a 0600 file through a rename so that a reader never sees half a
// PIN or half a configuration.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
