//go:build cgo

package hsm_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// recoveryMetrics records what a keyring reports of outages and reopens.
type recoveryMetrics struct {
	hsm.NopMetrics
	mu        sync.Mutex
	outages   int
	reopened  int
	failed    int
	available func() bool
}

var _ hsm.RecoveryMetrics = (*recoveryMetrics)(nil)

func (m *recoveryMetrics) WatchAvailability(f func() bool) { m.available = f }
func (m *recoveryMetrics) ObserveOutage()                  { m.mu.Lock(); m.outages++; m.mu.Unlock() }
func (m *recoveryMetrics) ObserveReopen(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.reopened++
	} else {
		m.failed++
	}
}

func (m *recoveryMetrics) counts() (outages, reopened, failed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outages, m.reopened, m.failed
}

// recoveringKeyring is a keyring on a fresh token that retries a reopen every few
// milliseconds.
func recoveringKeyring(t *testing.T) (*hsm.Keyring, *softhsm.Token, *recoveryMetrics) {
	t.Helper()
	return recoveringKeyringOn(t, softhsmtest.New(t))
}

func recoveringKeyringOn(t *testing.T, tok *softhsm.Token) (*hsm.Keyring, *softhsm.Token, *recoveryMetrics) {
	t.Helper()
	m := &recoveryMetrics{}
	cfg := configFor(tok)
	cfg.Metrics = m
	cfg.ReopenBackoff, cfg.ReopenMaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	k, err := hsm.Initialize(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k, tok, m
}

// tokenStorage is the SoftHSM2 directory holding tok's objects: the config's tokendir has
// one directory per token, whose token.object carries the label.
func tokenStorage(t *testing.T, tok *softhsm.Token) string {
	t.Helper()
	f, err := os.Open(tok.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tokens string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == "directories.tokendir" {
			tokens = strings.TrimSpace(v)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(tokens, "*"))
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "token.object")); err == nil && bytes.Contains(b, []byte(tok.Label)) {
			return d
		}
	}
	t.Fatalf("no SoftHSM2 storage for token %s under %q", tok.Label, tokens)
	return ""
}

// eventually polls cond (the keyring reconnects in its own goroutine) for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecoversWhenTheTokenComesBack takes the real SoftHSM2 token's key objects away from
// under an open keyring (their files moved out of the token's storage, as when an HSM
// loses its keys or its connection) and brings them back: during the outage every
// operation fails with ErrUnavailable, fast and without reaching the token, the reopens
// fail and are counted, and once the objects are back the keyring reconnects on its own:
// old blobs unwrap, PIN verifiers match, the audit key signs under the same public key.
//
// SoftHSM2 forgets objects it saw vanish until the module is finalised, which the
// reopen does when its context is the module's last user, as in hufud. softhsmtest keeps
// the module initialised for the whole test process, so the test runs in a child process
// that opens only this keyring (TestRecoveryChild).
func TestRecoversWhenTheTokenComesBack(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecoveryChild$", "-test.v")
	cmd.Env = append(os.Environ(), "HUFU_HSM_RECOVERY_CHILD="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("child: recovered")) {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestRecoveryChild is the child half of TestRecoversWhenTheTokenComesBack; it does nothing
// in a normal run.
func TestRecoveryChild(t *testing.T) {
	dir := os.Getenv("HUFU_HSM_RECOVERY_CHILD")
	if dir == "" {
		t.Skip("runs only as TestRecoversWhenTheTokenComesBack's child")
	}
	tok, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "hufu-recovery"})
	if err != nil {
		t.Fatal(err)
	}
	k, tok, m := recoveringKeyringOn(t, tok)
	ctx := context.Background()
	blob, err := k.Wrap(ctx, []byte("share"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	salt := bytes.Repeat([]byte{7}, hsm.MinSaltSize)
	verifier, err := k.PINVerifier(ctx, salt, []byte("key-1"), []byte("2468"))
	if err != nil {
		t.Fatal(err)
	}
	pub := k.AuditSigner().PublicKey()
	if !m.available() {
		t.Fatal("a fresh keyring reports itself unavailable")
	}

	storage := tokenStorage(t, tok)
	objects, _ := filepath.Glob(filepath.Join(storage, "*.object"))
	away := t.TempDir()
	var moved []string
	for _, o := range objects {
		if filepath.Base(o) == "token.object" {
			continue
		}
		if err := os.Rename(o, filepath.Join(away, filepath.Base(o))); err != nil {
			t.Fatal(err)
		}
		moved = append(moved, filepath.Base(o))
	}
	if len(moved) < 3 {
		t.Fatalf("moved %v; want the three keys' objects at least", moved)
	}

	err = k.Health(ctx)
	if !errors.Is(err, hsm.ErrUnavailable) || !errors.Is(err, hsm.ErrHSM) {
		t.Fatalf("Health with the keys gone: %v; want ErrUnavailable", err)
	}
	t.Logf("outage: %v", err)
	checkAllFail(t, k, blob, hsm.ErrUnavailable)
	if m.available() {
		t.Error("availability reports true during the outage")
	}
	// Fail fast: no session is taken, nothing waits for the pool wait timeout.
	start := time.Now()
	for range 100 {
		if _, err := k.Unwrap(ctx, blob, []byte("ad")); !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("Unwrap during the outage: %v", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Unwraps during the outage took %v; they should fail at once", d)
	}
	eventually(t, "a failed reopen while the keys are away", func() bool { _, _, failed := m.counts(); return failed > 0 })
	if err := k.Health(ctx); err == nil || !strings.Contains(err.Error(), "reconnection attempts; last attempt") {
		t.Errorf("Health after failed reopens: %v; want the attempts and the last error", err)
	}

	for _, name := range moved {
		if err := os.Rename(filepath.Join(away, name), filepath.Join(storage, name)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "Health after the keys came back", func() bool { return k.Health(ctx) == nil })
	if !m.available() {
		t.Error("availability reports false after the reconnection")
	}
	if got, err := k.Unwrap(ctx, blob, []byte("ad")); err != nil || string(got) != "share" {
		t.Fatalf("Unwrap after the reconnection: %q %v", got, err)
	}
	if ok, err := k.VerifyPIN(ctx, verifier, salt, []byte("key-1"), []byte("2468")); err != nil || !ok {
		t.Fatalf("VerifyPIN after the reconnection: %v %v", ok, err)
	}
	digest := sha256.Sum256([]byte("checkpoint"))
	sig, err := k.AuditSigner().SignDigest(ctx, digest[:])
	if err != nil || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("audit signature after the reconnection: %v", err)
	}
	if _, err := k.Wrap(ctx, []byte("new"), nil); err != nil {
		t.Fatalf("Wrap after the reconnection: %v", err)
	}
	outages, reopened, failed := m.counts()
	if outages != 1 || reopened != 1 || failed == 0 {
		t.Fatalf("outages %d, reopens %d ok and %d failed; want 1, 1 and some", outages, reopened, failed)
	}
	t.Logf("child: recovered after %d failed reopens", failed)
}

// TestRecoversAfterClosedSessions closes every session of the process on the token (as a
// token reset or a module restart does): the keyring notices at its next operation and
// reopens its context, pool and login without a restart.
func TestRecoversAfterClosedSessions(t *testing.T) {
	k, tok, m := recoveringKeyring(t)
	ctx := context.Background()
	blob, err := k.Wrap(ctx, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _, slot := softhsmtest.Session(t, tok)
	if err := p.CloseAllSessions(slot); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Unwrap(ctx, blob, nil); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Unwrap on closed sessions: %v; want ErrUnavailable", err)
	}
	eventually(t, "Health after the reopen", func() bool { return k.Health(ctx) == nil })
	if got, err := k.Unwrap(ctx, blob, nil); err != nil || string(got) != "x" {
		t.Fatalf("Unwrap after the reopen: %q %v", got, err)
	}
	if outages, reopened, _ := m.counts(); outages != 1 || reopened != 1 {
		t.Errorf("outages %d, reopens %d; want 1 and 1", outages, reopened)
	}
}

// TestNoOutageForRejectedInput: errors that say nothing about the token (a tampered blob, an
// unknown KEK, a bad digest) leave the keyring available.
func TestNoOutageForRejectedInput(t *testing.T) {
	k, _, m := recoveringKeyring(t)
	ctx := context.Background()
	blob, err := k.Wrap(ctx, []byte("x"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	if _, err := k.Unwrap(ctx, tampered, []byte("ad")); !errors.Is(err, hsm.ErrAuthFailed) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := k.AuditSigner().SignDigest(ctx, []byte("short")); !errors.Is(err, hsm.ErrInvalidInput) {
		t.Fatalf("short digest: %v", err)
	}
	if err := k.Health(ctx); err != nil {
		t.Fatalf("Health after rejected input: %v", err)
	}
	if outages, _, _ := m.counts(); outages != 0 || !m.available() {
		t.Fatalf("%d outages after rejected input", outages)
	}
}
