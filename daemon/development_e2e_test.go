package daemon_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestDevelopmentModeIsVisible: a development appliance says so on /metrics
// (hufu_development_mode 1) and on /readyz?verbose ("[+]mode development"), and stays
// ready; the plain /readyz answer is unchanged. hufu_build_info carries what
// `hufud version` prints.
func TestDevelopmentModeIsVisible(t *testing.T) {
	a := startAdminAppliance(t, nil)
	if !a.cfg.Development {
		t.Fatal("the embedded defaults are no longer development; this test needs them")
	}

	code, body := a.call("GET", "/metrics", admin.Operator)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mode := families["hufu_development_mode"]
	if mode == nil || len(mode.GetMetric()) != 1 || mode.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("hufu_development_mode in development: %v", mode)
	}
	build := families["hufu_build_info"]
	if build == nil || len(build.GetMetric()) != 1 {
		t.Fatalf("hufu_build_info: %v", build)
	}
	labels := map[string]string{}
	for _, l := range build.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	bi := buildinfo.Read()
	if want := map[string]string{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion}; !equalMaps(labels, want) {
		t.Errorf("hufu_build_info labels %v, want %v", labels, want)
	}

	for _, tt := range []struct {
		name, path string
		role       admin.Role
		want       []string
		notWant    []string
	}{
		{"verbose, no token", "/readyz?verbose", "", []string{"[+]mode development\n", "[+]hsm ok", "[+]store ok", "[+]grpc ok", "ok\n"}, []string{"[-]"}},
		{"verbose, token", "/readyz?verbose", admin.Operator, []string{"[+]mode development\n", "[+]grpc ok"}, []string{"[-]"}},
		{"plain", "/readyz", "", []string{"ok\n"}, []string{"mode"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := a.call("GET", tt.path, tt.role)
			if code != http.StatusOK {
				t.Fatalf("%s: %d %s", tt.path, code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("%s lacks %q:\n%s", tt.path, w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(string(body), w) {
					t.Errorf("%s has %q:\n%s", tt.path, w, body)
				}
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// lockedBuffer is a log destination the daemon's goroutines and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDevelopmentBannerAndReflection: a development appliance logs one WARN banner when it
// opens, and serves gRPC server reflection only when grpc.reflection is set: by default
// (production and development alike) the reflection service is unknown.
func TestDevelopmentBannerAndReflection(t *testing.T) {
	for _, tt := range []struct {
		name       string
		reflection bool
	}{
		{"reflection off by default", false},
		{"reflection on", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs lockedBuffer
			a := daemontest.StartWithLog(t, slog.New(slog.NewJSONHandler(&logs, nil)), func(c *config.Config) {
				if tt.reflection {
					c.GRPC.Reflection = true
				}
			})
			var banners []string
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "DEVELOPMENT MODE") {
					banners = append(banners, line)
				}
			}
			if len(banners) != 1 || !strings.Contains(banners[0], `"level":"WARN"`) ||
				!strings.Contains(banners[0], "not for production") || !strings.Contains(banners[0], "dev SMS outbox") {
				t.Errorf("want one WARN development banner, got %q", banners)
			}

			conn := a.Dial("device-reflection")
			stream, err := reflectionpb.NewServerReflectionClient(conn.ClientConn()).ServerReflectionInfo(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: ""},
			}); err != nil && !errors.Is(err, io.EOF) {
				// io.EOF: the server ended the stream before the message went out (it does
				// when reflection is off); Recv returns its status.
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if !tt.reflection {
				if status.Code(err) != codes.Unimplemented {
					t.Fatalf("reflection while off: %v, %v; want Unimplemented", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("reflection while on: %v", err)
			}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			if !strings.Contains(strings.Join(names, " "), "hufu.v1.KeyService") {
				t.Errorf("reflection lists %v, without hufu.v1.KeyService", names)
			}
		})
	}
}
