//go:build cgo

// Package softhsmtest gives tests a ready SoftHSM2 token: a fresh, labelled token with a user
// PIN file, under one private SoftHSM2 directory per test process.
//
//	func TestMain(m *testing.M) { softhsmtest.Main(m) } // optional: removes the directory
//
//	tok := softhsmtest.New(t)
//	// open an hsm.Keyring with tok.ModulePath, tok.Label and tok.PINFile
//
// SoftHSM2 reads its configuration once per C_Initialize and crypto11 refuses a module that
// someone else initialised. So, once per process, the package provisions an anchor token
// (softhsm.Provision initialises and finalises the module around that) and then opens a
// crypto11 context on it that is never closed: from then on the module stays initialised,
// by crypto11, until the process exits. Every later token is provisioned while that context
// holds the module (Provision borrows the initialisation), and keyrings that tests open and
// close never finalise the module under each other's feet. Tests in one package may
// therefore run in parallel, each with its own token label.
package softhsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/hufu-hsm/hufu/softhsm"
)

// EnvDir, if set, names the SoftHSM2 directory to use instead of a fresh temporary one
// (useful to inspect tokens after a failed run).
const EnvDir = "HUFU_SOFTHSMTEST_DIR"

const anchorLabel = "hufu-softhsmtest-anchor"

var (
	setupOnce sync.Once
	setupErr  error
	dir       string
	ownDir    bool
	runID     string
	counter   atomic.Int64
)

func setup() {
	// A random run id keeps labels unique when EnvDir makes runs share a directory.
	var id [4]byte
	_, _ = rand.Read(id[:])
	runID = hex.EncodeToString(id[:])
	dir = os.Getenv(EnvDir)
	if dir == "" {
		d, err := os.MkdirTemp("", "hufu-softhsm-")
		if err != nil {
			setupErr = err
			return
		}
		dir, ownDir = d, true
	}
	tok, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: anchorLabel})
	if err != nil {
		setupErr = err
		return
	}
	pin, err := tok.UserPIN()
	if err != nil {
		setupErr = err
		return
	}
	// This context is never closed: it keeps crypto11's reference count on the module
	// above zero for the life of the process, so no test's Keyring.Close finalises it.
	if _, err := crypto11.Configure(&crypto11.Config{
		Path:        tok.ModulePath,
		TokenLabel:  tok.Label,
		Pin:         pin,
		MaxSessions: 2,
	}); err != nil {
		setupErr = fmt.Errorf("softhsmtest: hold the module open: %w", err)
	}
}

// New provisions a new token for tb and returns what is needed to open it. Each call gets
// its own label, so parallel tests never share keys. It fails tb, with installation advice
// if SoftHSM2 is missing, rather than skipping: a test that needs an HSM and did not run is
// not a passing test.
func New(tb testing.TB) *softhsm.Token {
	tb.Helper()
	setupOnce.Do(setup)
	if setupErr != nil {
		tb.Fatalf("softhsmtest: %v", setupErr)
	}
	label := fmt.Sprintf("hufu-test-%s-%d", runID, counter.Add(1))
	tok, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: label})
	if err != nil {
		tb.Fatalf("softhsmtest: provision token %q: %v", label, err)
	}
	return tok
}

// Dir returns the process's SoftHSM2 directory (after the first New).
func Dir() string { return dir }

// Main runs the tests and then removes the temporary SoftHSM2 directory. Use it from
// TestMain; without it the directory is left in os.TempDir. (The test wrapper exits with
// m.Run's result when TestMain returns.)
func Main(m *testing.M) {
	m.Run()
	if ownDir && dir != "" {
		_ = os.RemoveAll(dir)
	}
}
