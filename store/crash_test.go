package store

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

const (
	crashDirEnv = "HUFU_STORE_CRASH_DIR"
	crashKeyEnv = "HUFU_STORE_CRASH_KEY"
	crashAcks   = 300 // acknowledged commits before the kill
)

// TestCrashChild is the child half of TestCrashSafety; it does nothing unless started by
// it. It commits records from several goroutines as fast as it can and prints "ack <n>"
// once Update has returned nil for record n.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as TestCrashSafety's child")
	}
	der, _ := hex.DecodeString(os.Getenv(crashKeyEnv))
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, Signer: &keySigner{key: k.(*ecdsa.PrivateKey)}, CheckpointEvery: 50})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				n := next
				next++
				mu.Unlock()
				id := fmt.Sprintf("crash%06d", n)
				key, _ := examples.Key(id)
				err := s.Update(ctx, func(tx *Tx) error {
					if err := examples.Put(tx, id, &storepb.Example{Count: int64(n)}); err != nil {
						return err
					}
					return tx.Audit(Event{Actor: "crash", Action: "example.put", Subject: key, Outcome: OutcomeOK})
				})
				if err != nil {
					fmt.Fprintf(os.Stderr, "update %d: %v\n", n, err)
					os.Exit(3)
				}
				// One write(2) per line: lines of concurrent writers never interleave.
				if _, err := os.Stdout.WriteString("ack " + strconv.Itoa(n) + "\n"); err != nil {
					os.Exit(4)
				}
			}
		}()
	}
	wg.Wait()
}

// TestCrashSafety kills a committing process with SIGKILL and checks that everything it
// acknowledged survived, with its audit record, and that the chain verifies.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	signer := newKeySigner(t)
	der, err := x509.MarshalPKCS8PrivateKey(signer.key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashKeyEnv+"="+hex.EncodeToString(der))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		n, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue // test framework chatter
		}
		num, _ := strconv.Atoi(n)
		acked[fmt.Sprintf("crash%06d", num)] = true
		if len(acked) == crashAcks && !killed {
			// Mid-stream: the writers are still committing when the signal lands.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before %d acks (%d): %v\n%s", crashAcks, len(acked), err, stderr.String())
	}
	t.Logf("%d records acknowledged before SIGKILL", len(acked))

	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for id := range acked {
		if _, err := examples.Read(ctx, s, id); err != nil {
			t.Errorf("acknowledged %s lost: %v", id, err)
		}
	}
	head, _ := s.Head()
	audited := map[string]bool{}
	for seq := uint64(1); seq <= head; seq++ {
		r, err := s.AuditRecord(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		audited[strings.TrimPrefix(r.Subject, "u/")] = true
	}
	for id := range acked {
		if !audited[id] {
			t.Errorf("acknowledged %s has no audit record", id)
		}
	}
	// Every stored record has its audit record too (nothing half-committed).
	page, err := examples.List(ctx, s, "crash", ListOptions{Limit: MaxListLimit}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range page.Items {
		if !audited[examples.ID(it.Key)] {
			t.Errorf("%s stored without audit record", it.Key)
		}
	}
	res, err := s.VerifyAudit(ctx, signer.PublicKey())
	if err != nil {
		t.Fatalf("chain after crash: %v", err)
	}
	t.Logf("after crash: %d records, verified through checkpoint %d", res.Records, res.VerifiedThrough)
}
