package daemon_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSystemClientChangesDoNotRaceTheGate: registrations and removals of one client that
// overlap leave the gate's table as the store has it. First the interleaving that used to
// go wrong, forced: a removal commits between a registration's commit and its update of
// the table (the table then kept a client the store no longer had). Then registrations,
// removals and authorisations at once, under -race, after which table and store agree.
func TestSystemClientChangesDoNotRaceTheGate(t *testing.T) {
	a := startAdminAppliance(t, nil)
	const name, service = "platform-1", "hufu.v1.ScanService"
	register := func() (int, []byte) {
		return a.callBody("POST", "/system-clients", admin.SecurityOfficer, `{"name":"`+name+`","services":["`+service+`"]}`)
	}
	remove := func() (int, []byte) { return a.call("DELETE", "/system-clients/"+name, admin.SecurityOfficer) }
	inStore := func() bool {
		code, body := a.call("GET", "/system-clients", admin.Operator)
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, body)
		}
		return strings.Contains(string(body), `"`+name+`"`)
	}

	// A certificate for the client, to knock at the gate over real gRPC.
	code, body := register()
	var reg struct{ Certificate *admin.IssuedCertificate }
	if err := json.Unmarshal(body, &reg); code != http.StatusCreated || err != nil || reg.Certificate == nil {
		t.Fatalf("register: %d %s", code, body)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	must(t, os.WriteFile(certFile, []byte(reg.Certificate.CertificatePEM), 0o600))
	must(t, os.WriteFile(keyFile, []byte(reg.Certificate.KeyPEM), 0o600))
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(a.cfg.DataDir, "tls", "ca.pem"), ServerName: "localhost",
		ClientCertFile: certFile, ClientKeyFile: keyFile})
	must(t, err)
	defer conn.Close()
	scan := hufuv1.NewScanServiceClient(conn.ClientConn())
	authorised := func() bool {
		_, err := scan.ListBindings(bg, &hufuv1.ListBindingsRequest{})
		if !servedPastTheGate(err) && status.Code(err) != codes.PermissionDenied {
			t.Errorf("authorise: %v", err)
		}
		return servedPastTheGate(err)
	}
	agree := func(when string) {
		t.Helper()
		stored := inStore()
		if a.d.SystemClientAllowed(name, service) != stored || authorised() != stored {
			t.Fatalf("%s: the store has the client %v, the gate allows it %v", when, stored, !stored)
		}
	}
	if code, body := remove(); code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", code, body)
	}

	// Forced: the removal runs to its end inside the registration's window.
	a.d.SetSystemClientCommitHook(func(string) {
		a.d.SetSystemClientCommitHook(nil)
		if code, body := remove(); code != http.StatusNoContent {
			t.Errorf("remove in the window: %d %s", code, body)
		}
	})
	if code, body := register(); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	if inStore() {
		t.Fatal("the removal did not commit")
	}
	agree("a removal inside a registration's window")

	// Concurrent: each round registers, removes and authorises at once.
	for round := range 8 {
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); register() }()
		go func() { defer wg.Done(); remove() }()
		go func() {
			defer wg.Done()
			for range 4 {
				authorised()
				a.d.SystemClientAllowed(name, service)
			}
		}()
		wg.Wait()
		agree("round " + string(rune('0'+round)))
	}
}
