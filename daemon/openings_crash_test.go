package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// crashChildEnv carries the configuration and the clock of an appliance that
// TestOpeningCrashChild serves in a child process, for its parent to SIGKILL.
const crashChildEnv = "HUFU_OPENING_CRASH_CHILD"

type crashChild struct {
	Config config.Config
	Now    time.Time
}

// TestOpeningCrashChild is the appliance process of TestBidOpeningSurvivesSIGKILL: it serves
// until killed. Run alone it does nothing.
func TestOpeningCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("the appliance process of TestBidOpeningSurvivesSIGKILL")
	}
	var c crashChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := daemon.Open(ctx, c.Config, daemon.Options{Clock: daemontest.NewClock(c.Now), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Fatal(d.Serve(ctx, nil)) // only SIGKILL ends it
}

// startCrashChild serves the appliance of cfg, at the fixed time now, in a child process.
func startCrashChild(t *testing.T, cfg config.Config, now time.Time, sys hufuv1.OpeningServiceClient) *exec.Cmd {
	t.Helper()
	spec, err := json.Marshal(crashChild{Config: cfg, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpeningCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Ready when it answers (ListOpenings needs the store, the HSM and the TLS listener).
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		_, err := sys.ListOpenings(ctx, &hufuv1.ListOpeningsRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("the appliance process did not come up: %v", err)
		}
	}
}

// kill SIGKILLs the appliance process and reaps it.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBidOpeningSurvivesSIGKILL kills the appliance process during consent and during
// release: every acknowledged consent is kept, a consent cut short is given again, the
// release resumes where it stopped (nothing is released twice unless asked again), and the
// report still verifies.
func TestBidOpeningSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts appliance processes")
	}
	addr := freePort(t)
	a := certAppliance(t, func(c *config.Config) {
		c.Listen.GRPC = addr
		c.Openings.ReleaseChunk = 2
		c.SystemClients = []config.SystemClient{
			{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.OpeningService"}},
		}
	})
	desk := a.desk()
	sys, scans := a.openingSystem(devpki.CLIClientName)
	var bidders []*bidder
	for i := range 4 {
		p := newApplicant(t, a, fmt.Sprintf("1380013809%d", i), fmt.Sprintf("crash-phone-%d", i), fmt.Sprintf("crash-key-%d", i))
		serial, encKey := p.issueForEnvelopes(desk)
		cert, _, _, _ := p.download(serial)
		key := *encKey
		key.cred = client.PINCredential("123456")
		bidders = append(bidders, &bidder{name: serial, phone: hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn()), key: &key,
			serial: serial, pub: cert.PublicKey.(*ecdsa.PublicKey), conn: p.conn})
	}
	now := a.clock.Now()
	o, err := sys.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "crash-0001", ProjectCode: "CRASH-1", ProjectName: "断电开标",
		PlatformId: "demo", WindowStart: timestamppb.New(now.Add(time.Hour)), WindowEnd: timestamppb.New(now.Add(2 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	id := o.Opening.Id
	keys := map[string][]byte{}
	var regs []*hufuv1.EnvelopeRegistration
	for i, b := range bidders {
		for j := range 2 {
			env := fmt.Sprintf("env-%d-%d", i, j)
			keys[env] = make([]byte, 16)
			rand.Read(keys[env])
			ct, err := sm2.Encrypt(rand.Reader, b.pub, keys[env], nil)
			if err != nil {
				t.Fatal(err)
			}
			regs = append(regs, &hufuv1.EnvelopeRegistration{EnvelopeId: env, CertificateSerial: b.serial, Ciphertext: ct})
		}
	}
	if _, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: id, Envelopes: regs}); err != nil {
		t.Fatal(err)
	}
	// From here the appliance is a process of its own, in the window.
	a.stop()
	inWindow := now.Add(time.Hour + time.Minute)
	child := startCrashChild(t, a.cfg, inWindow, sys)
	hall, err := scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "crash-hall", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT,
		OpeningId: id, Hall: true, TtlSeconds: 1800})
	if err != nil {
		t.Fatal(err)
	}

	// Consent: the process dies as soon as the first bidder's consent is acknowledged.
	acked := make([]bool, len(bidders))
	first := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for i, b := range bidders {
		wg.Go(func() {
			if err := b.consent(t, hall.Session.QrPayload, false); err == nil {
				acked[i] = true
				once.Do(func() { close(first) })
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-first:
	case <-finished:
		t.Fatal("no consent was acknowledged")
	}
	kill(t, child)
	wg.Wait()
	child = startCrashChild(t, a.cfg, inWindow, sys)
	consented := map[string]bool{}
	for _, e := range listEnvelopes(t, sys, id) {
		consented[e.EnvelopeId] = e.Consented
	}
	for i, b := range bidders {
		mine := []string{fmt.Sprintf("env-%d-0", i), fmt.Sprintf("env-%d-1", i)}
		if acked[i] && (!consented[mine[0]] || !consented[mine[1]]) {
			t.Fatalf("an acknowledged consent was lost: bidder %d", i)
		}
		if !consented[mine[0]] {
			if err := b.consent(t, hall.Session.QrPayload, false); err != nil {
				t.Fatalf("consent again after the crash: %v", err)
			}
		}
	}

	// Release: the process dies after the first answer.
	got := map[string][]byte{}
	stream, err := sys.Release(bg, &hufuv1.ReleaseRequest{OpeningId: id})
	if err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range r.Envelopes {
		got[e.EnvelopeId] = e.Key
	}
	kill(t, child)
	for {
		r, err := stream.Recv()
		if err != nil {
			break
		}
		for _, e := range r.Envelopes {
			got[e.EnvelopeId] = e.Key
		}
	}
	child = startCrashChild(t, a.cfg, inWindow, sys)
	rest, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: id})
	if err != nil {
		t.Fatalf("the release does not resume: %v", err)
	}
	t.Logf("consents acknowledged before the kill: %v; answers before the release was killed: %d, after the restart: %d", acked, len(got), len(rest))
	for _, r := range rest {
		if _, dup := got[r.EnvelopeId]; dup {
			t.Fatalf("envelope %s released twice without being asked", r.EnvelopeId)
		}
		got[r.EnvelopeId] = r.Key
	}
	// Released before the crash but never answered: asked for again, explicitly.
	var lost []string
	for env := range keys {
		if _, ok := got[env]; !ok {
			lost = append(lost, env)
		}
	}
	if len(lost) > 0 {
		t.Logf("released before the kill but never answered, asked again: %v", lost)
		again, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: id, EnvelopeIds: lost, IncludeReleased: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range again {
			got[r.EnvelopeId] = r.Key
		}
	}
	for env, want := range keys {
		if string(got[env]) != string(want) {
			t.Fatalf("envelope %s: released %x, want %x", env, got[env], want)
		}
	}
	for _, e := range listEnvelopes(t, sys, id) {
		asked := strings.Contains(strings.Join(lost, ","), e.EnvelopeId)
		if e.Releases != 1 && !(asked && e.Releases == 2) {
			t.Fatalf("envelope %s released %d times (asked again: %v)", e.EnvelopeId, e.Releases, asked)
		}
	}

	if _, err := sys.CloseOpening(bg, &hufuv1.CloseOpeningRequest{OpeningId: id}); err != nil {
		t.Fatal(err)
	}
	keyResp, err := scans.GetScanKey(bg, &hufuv1.GetScanKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bidopening.Verify(readReport(t, sys, id), parseECKey(t, keyResp.PublicKeyPem)); err != nil {
		t.Fatalf("the report of a crashed opening does not verify: %v", err)
	}
	kill(t, child)
}

func listEnvelopes(t *testing.T, sys hufuv1.OpeningServiceClient, id string) []*hufuv1.Envelope {
	t.Helper()
	resp, err := sys.ListEnvelopes(bg, &hufuv1.ListEnvelopesRequest{OpeningId: id, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Envelopes
}
