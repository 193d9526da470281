package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/store"
)

// The appliance on a full disk (issue 16): writes fail at once with ResourceExhausted,
// readiness and gRPC health go not-ready, /metrics and /livez keep answering, a start on
// the full disk fails at once with the store's message, and everything comes back by
// itself when space is freed, the audit log verifying. It runs with the data directory on
// a real 64 MiB tmpfs where root may mount one (CI), and with a filesystem that reports
// the free space the test sets otherwise.

// dataDisk is a disk under the appliance's data directory that the test fills and frees.
type dataDisk interface {
	// prepare points the configuration (and the appliance) at the disk.
	prepare(t *testing.T, a *adminAppliance)
	fill(t *testing.T, leave uint64)
	free(t *testing.T)
}

type tmpfsDataDisk struct{ mount string }

func (d *tmpfsDataDisk) prepare(t *testing.T, a *adminAppliance) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real full disk needs root to mount a small tmpfs; the injected variant runs instead")
	}
	d.mount = filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(d.mount, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", d.mount).CombinedOutput(); err != nil {
		t.Skipf("mount not permitted here (%v: %s); the injected variant runs instead", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", d.mount).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", d.mount, err, out)
		}
	})
	// Move what hufud init wrote onto the small disk.
	if out, err := exec.Command("cp", "-a", a.cfg.DataDir+"/.", d.mount).CombinedOutput(); err != nil {
		t.Fatalf("copying the data directory: %v: %s", err, out)
	}
	a.cfg.DataDir = d.mount
}

func (d *tmpfsDataDisk) fill(t *testing.T, leave uint64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(d.mount, &st); err != nil {
		t.Fatal(err)
	}
	avail := st.Bavail * uint64(st.Bsize)
	if avail <= leave {
		return
	}
	f, err := os.OpenFile(filepath.Join(d.mount, "filler"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := avail - leave; n > 0; {
		c := chunk[:min(n, uint64(len(chunk)))]
		if _, err := f.Write(c); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
		n -= uint64(len(c))
	}
}

func (d *tmpfsDataDisk) free(t *testing.T) {
	if err := os.Remove(filepath.Join(d.mount, "filler")); err != nil {
		t.Fatal(err)
	}
}

// reportedSpaceFS is the fault-injecting fake: the real filesystem, reporting the free
// space the test sets.
type reportedSpaceFS struct {
	vfs.FS
	avail *atomic.Uint64
}

func (f reportedSpaceFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	return vfs.DiskUsage{AvailBytes: f.avail.Load(), TotalBytes: 64 << 20}, nil
}

type injectedDataDisk struct{ avail atomic.Uint64 }

func (d *injectedDataDisk) prepare(_ *testing.T, a *adminAppliance) {
	d.avail.Store(1 << 40)
	a.storeFS = reportedSpaceFS{FS: vfs.Default, avail: &d.avail}
}
func (d *injectedDataDisk) fill(_ *testing.T, leave uint64) { d.avail.Store(leave) }
func (d *injectedDataDisk) free(*testing.T)                 { d.avail.Store(1 << 40) }

func TestDiskFullAppliance(t *testing.T) {
	for _, v := range []struct {
		name string
		disk dataDisk
	}{{"tmpfs", &tmpfsDataDisk{}}, {"injected", &injectedDataDisk{}}} {
		t.Run(v.name, func(t *testing.T) { testDiskFullAppliance(t, v.disk) })
	}
}

func testDiskFullAppliance(t *testing.T, disk dataDisk) {
	const minFree = 8 << 20
	a := newAdminAppliance(t, func(c *config.Config) { c.Store.MinFreeMiB = minFree >> 20 })
	disk.prepare(t, a)
	a.start()
	t.Cleanup(func() { a.stop() })

	conn := a.dial("device-diskfull")
	sendCode := func(phone string) error {
		_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
		return err
	}
	if err := sendCode("13800000161"); err != nil {
		t.Fatal(err)
	}
	watchCtx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn.ClientConn()).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for {
			resp, err := watch.Recv()
			if err != nil {
				t.Fatalf("gRPC health never became %v: %v", want, err)
			}
			if resp.Status == want {
				return
			}
		}
	}
	waitHealth(healthpb.HealthCheckResponse_SERVING)

	disk.fill(t, minFree/2)
	// Readiness notices at its next probe; the write guard trusts a passing measurement
	// for 250 ms, so a write right after the fill might still pass: wait for the former.
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	start := time.Now()
	err = sendCode("13800000162")
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "store: no space left on device" {
		t.Fatalf("a write on the full disk = %v; want ResourceExhausted \"store: no space left on device\"", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the write took %v to fail; want under 2s", d)
	}
	if code, body := a.call("GET", "/readyz?verbose", admin.Operator); code != http.StatusServiceUnavailable ||
		!strings.Contains(string(body), "[-]store failed") || !strings.Contains(string(body), "no space left on device") {
		t.Fatalf("readyz on the full disk: %d %s", code, body)
	}
	if code, body := a.call("GET", "/metrics", admin.Operator); code != http.StatusOK || !strings.Contains(string(body), "hufu_build_info") {
		t.Fatalf("/metrics on the full disk: %d", code)
	}
	if code, _ := a.call("GET", "/livez", ""); code != http.StatusOK {
		t.Fatalf("/livez on the full disk: %d", code)
	}
	// The systemd watchdog keeps being fed: a restart would not start on the full disk.
	if err := a.d.Healthy(bg); err != nil {
		t.Fatalf("Healthy (the watchdog's check) on the full disk: %v", err)
	}

	// Space comes back: so does everything, without a restart.
	disk.free(t)
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	if err := sendCode("13800000162"); err != nil {
		t.Fatalf("a write after freeing space: %v", err)
	}

	// A start on the full disk fails at once, with the store's message.
	cancel() // the health watch would hold the graceful stop for its whole grace period
	a.stop()
	disk.fill(t, minFree/2)
	start = time.Now()
	_, err = daemon.Open(bg, a.cfg, daemon.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), StoreFS: a.storeFS})
	if err == nil {
		t.Fatal("the daemon opened on a full disk")
	}
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "store: no space left on device") {
		t.Fatalf("start on a full disk: %v; want the store's no-space error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("start on a full disk took %v to fail; want under 2s", d)
	}
	disk.free(t)
	a.start()
	res, err := store.VerifyExport(bytes.NewReader(a.export()), a.auditKey())
	if err != nil || res.VerifiedThrough != res.To {
		t.Fatalf("audit log after the full disk: verified through %d of %d: %v", res.VerifiedThrough, res.To, err)
	}
}
