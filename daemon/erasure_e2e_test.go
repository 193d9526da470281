package daemon_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/hsm"
)

// storeFilesHolding lists the files of the store directory (tables, write-ahead logs,
// manifests) that contain any 16-byte piece of secret. Pieces, not the whole: tables are
// compressed, and a compressor may replace part of a value by a reference.
func storeFilesHolding(t *testing.T, dir string, secret []byte) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+16 <= len(secret); i++ {
			if bytes.Contains(b, secret[i:i+16]) {
				out = append(out, e.Name())
				break
			}
		}
	}
	return out
}

// TestKEKErasureMakesARevocationFinal: a revoked key's wrapped share, taken before the
// revocation, is still in the store's files after the revocation; after POST /kek/erase
// no file of the store holds any piece of it, the old KEK is gone from the token, a live
// key still signs, a backup taken before the erasure cannot be restored (the error names
// the destroyed KEK) and one taken after it restores.
func TestKEKErasureMakesARevocationFinal(t *testing.T) {
	a := startAdminAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService"}}}
	})
	ca := &certAppl{a.appliance}
	revoked := newApplicant(t, ca, "13900000101", "device-0101", "key-erase-revoked")
	live := newApplicant(t, ca, "13900000102", "device-0102", "key-erase-live")
	serial := revoked.issue(a.desk())
	share, err := a.d.WrappedShare(bg, revoked.key.id)
	if err != nil || len(share) < 32 {
		t.Fatalf("the revoked key's wrapped share: %d bytes, %v", len(share), err)
	}
	storeDir := filepath.Join(a.cfg.DataDir, "store")

	code, before := a.call("POST", "/backup", admin.SecurityOfficer)
	if code != http.StatusOK {
		t.Fatalf("backup before: %d %s", code, before)
	}
	if _, err := revoked.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "123456", ConfirmIrreversible: true}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if s, err := a.d.WrappedShare(bg, revoked.key.id); err != nil || s != nil {
		t.Fatalf("after the revocation the live store still holds a share (%d bytes, %v)", len(s), err)
	}
	// The person is told what is true: deleted at once, unrecoverable after the next erasure.
	msgs, err := revoked.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	told := false
	for _, m := range msgs.Messages {
		told = told || (m.Kind == hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_REVOKED && strings.Contains(m.Body, "已立即从在用数据中删除") &&
			strings.Contains(m.Body, "下一次密钥销毁后彻底无法恢复"))
	}
	if !told {
		t.Fatalf("no revocation message saying when the share is unrecoverable: %v", msgs.Messages)
	}
	// What revocation alone leaves: the deleted share is still in the files.
	if len(storeFilesHolding(t, storeDir, share)) == 0 {
		t.Fatal("before the erasure no store file holds the revoked share: the test proves nothing")
	}

	code, body := a.call("POST", "/kek/erase", admin.SecurityOfficer)
	if code != http.StatusOK {
		t.Fatalf("erase: %d %s", code, body)
	}
	var e admin.Erasure
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Resumed || strings.Join(e.Destroyed, ",") != "hufu-kek-v1" || e.Current != "hufu-kek-v2" || e.Rewrapped == 0 {
		t.Fatalf("erasure answered %+v", e)
	}
	_, body = a.call("GET", "/kek", admin.SecurityOfficer)
	var st admin.RotationStatus
	if err := json.Unmarshal(body, &st); err != nil || len(st.KEKs) != 1 || st.KEKs[0].Label != "hufu-kek-v2" || st.LastErasure == nil {
		t.Fatalf("KEKs after the erasure: %s", body)
	}
	// A live key signs under the new KEK (its cached share was dropped by the rewrap).
	if _, err := live.key.signer().Sign(rand.Reader, []byte("after the erasure"), signerOpts); err != nil {
		t.Fatalf("live key after the erasure: %v", err)
	}
	code, after := a.call("POST", "/backup", admin.SecurityOfficer)
	if code != http.StatusOK {
		t.Fatalf("backup after: %d %s", code, after)
	}
	if f := storeFilesHolding(t, storeDir, share); len(f) > 0 {
		t.Errorf("after the erasure, while serving, store files still hold the revoked share: %v", f)
	}
	a.stop()
	if f := storeFilesHolding(t, storeDir, share); len(f) > 0 {
		t.Errorf("after the erasure and a stop, store files still hold the revoked share: %v", f)
	}

	// The backup consequence.
	cfg := a.cfg
	cfg.DataDir = t.TempDir()
	_, err = daemon.Restore(bg, cfg, bytes.NewReader(before), "operator:olga")
	if !errors.Is(err, hsm.ErrUnknownKEK) || !strings.Contains(err.Error(), "hufu-kek-v1") {
		t.Fatalf("restoring a backup taken before the erasure: %v; want ErrUnknownKEK naming hufu-kek-v1", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left a store: %v", err)
	}
	cfg.DataDir = t.TempDir()
	if rs, err := daemon.Restore(bg, cfg, bytes.NewReader(after), "operator:olga"); err != nil || rs.KEK != "hufu-kek-v2" {
		t.Fatalf("restoring a backup taken after the erasure: %+v, %v", rs, err)
	}
}
