package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// cardAppliance is an appliance whose log the test reads, with an auditor's token for the
// audit export.
func cardAppliance(t *testing.T, mutate func(*config.Config)) (*appliance, *logBuffer, string) {
	t.Helper()
	logs := &logBuffer{}
	tok, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	live := daemontest.StartWithLog(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "audra", Role: string(admin.Auditor), SHA256: hash}}
		if mutate != nil {
			mutate(c)
		}
	})
	return &appliance{t: t, cfg: live.Config, clock: live.Clock, addr: live.Addr, stop: live.Stop, live: live}, logs, tok
}

// exportAudit returns the whole exported audit log.
func exportAudit(t *testing.T, adminURL, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, adminURL+"/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("audit export: %d %v", res.StatusCode, err)
	}
	return string(b)
}

// verifiedCardHolder signs in a phone and verifies its real name as 张三 (verifiedUser).
func (a *appliance) verifiedCardHolder(phone, device string) (*client.Conn, hufuv1.BankCardServiceClient) {
	a.t.Helper()
	conn, _ := a.verifiedUser(phone, device)
	return conn, hufuv1.NewBankCardServiceClient(conn.ClientConn())
}

func TestBankCardsEndToEnd(t *testing.T) {
	a, logs, auditTok := cardAppliance(t, func(c *config.Config) { c.Support.MaxBankCards = 2 })
	const (
		icbc  = "6222020200112233446" // 中国工商银行, Luhn-valid
		ccb   = "6217001234567890122" // 中国建设银行
		cmb   = "6225880000111122224" // 招商银行
		phone = "13800001111"
	)

	// Not verified yet: the four elements need the account's verified person.
	unverified := a.dial("card-unverified")
	a.signIn(unverified, "13800001112", "card-unverified")
	_, err := hufuv1.NewBankCardServiceClient(unverified.ClientConn()).BindBankCard(bg, &hufuv1.BindBankCardRequest{
		RequestId: "bind-unverified-1", CardNumber: icbc, ReservedPhone: phone})
	wantCode(t, err, codes.FailedPrecondition, "")

	_, cards := a.verifiedCardHolder(phone, "card-device")
	bind := func(req, number, reserved string) (*hufuv1.BankCard, error) {
		resp, err := cards.BindBankCard(bg, &hufuv1.BindBankCardRequest{RequestId: req, CardNumber: number, ReservedPhone: reserved})
		return resp.GetCard(), err
	}

	for _, tc := range []struct {
		name, number, reserved, field string
	}{
		{"Luhn check digit wrong", "6222020200112233447", phone, "card_number"},
		{"too short", "62220202", phone, "card_number"},
		{"letters", "6222O20200112233446", phone, "card_number"},
		{"reserved phone not a mobile", icbc, "0571-1234", "reserved_phone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bind("bind-bad-0001", tc.number, tc.reserved)
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}
	_, err = bind("short", icbc, phone)
	wantCode(t, err, codes.InvalidArgument, "request_id")

	// The bank does not confirm the card is the person's (development: a reserved phone
	// ending in 0000).
	_, err = bind("bind-mismatch-1", icbc, "13800000000")
	wantCode(t, err, codes.FailedPrecondition, "")

	// A good card, typed with spaces; a retry of the same request answers the same card.
	card, err := bind("bind-icbc-0001", "6222 0202 0011 2233 446", phone)
	if err != nil {
		t.Fatal(err)
	}
	if card.Last4 != "3446" || card.BankName != "中国工商银行" || card.NumberMasked != "**** **** **** 3446" ||
		card.ReservedPhoneMasked != "138****1111" || card.BoundAt == nil {
		t.Fatalf("bound %v", card)
	}
	again, err := bind("bind-icbc-0001", icbc, phone)
	if err != nil || again.Id != card.Id {
		t.Fatalf("retry: %v %v", again, err)
	}
	// The same card again, by another request: AlreadyExists.
	_, err = bind("bind-icbc-0002", icbc, phone)
	wantCode(t, err, codes.AlreadyExists, "")

	second, err := bind("bind-ccb-0001", ccb, phone)
	if err != nil || second.BankName != "中国建设银行" {
		t.Fatalf("second card: %v %v", second, err)
	}
	// The limit (2 here).
	_, err = bind("bind-cmb-0001", cmb, phone)
	wantCode(t, err, codes.FailedPrecondition, "")

	list, err := cards.ListBankCards(bg, &hufuv1.ListBankCardsRequest{})
	if err != nil || len(list.Cards) != 2 || list.Cards[0].Id != card.Id || list.Cards[1].Id != second.Id {
		t.Fatalf("list: %v %v", list, err)
	}
	js, _ := protojson.Marshal(list)

	// Another account sees none of them and cannot unbind them.
	_, other := a.verifiedCardHolder("13800002222", "card-other")
	if l, err := other.ListBankCards(bg, &hufuv1.ListBankCardsRequest{}); err != nil || len(l.Cards) != 0 {
		t.Fatalf("other's list: %v %v", l, err)
	}
	_, err = other.UnbindBankCard(bg, &hufuv1.UnbindBankCardRequest{CardId: card.Id})
	wantCode(t, err, codes.NotFound, "")
	// ...but may bind the same card to its own account (the same person's second account).
	if _, err := other.BindBankCard(bg, &hufuv1.BindBankCardRequest{RequestId: "other-icbc-1", CardNumber: icbc, ReservedPhone: phone}); err != nil {
		t.Fatal(err)
	}

	_, err = cards.UnbindBankCard(bg, &hufuv1.UnbindBankCardRequest{CardId: "nope"})
	wantCode(t, err, codes.InvalidArgument, "card_id")
	if _, err := cards.UnbindBankCard(bg, &hufuv1.UnbindBankCardRequest{CardId: card.Id}); err != nil {
		t.Fatal(err)
	}
	_, err = cards.UnbindBankCard(bg, &hufuv1.UnbindBankCardRequest{CardId: card.Id})
	wantCode(t, err, codes.NotFound, "")
	// Unbound, it may be bound again, and the limit has room again.
	if _, err := bind("bind-icbc-0003", icbc, phone); err != nil {
		t.Fatal(err)
	}
	list, _ = cards.ListBankCards(bg, &hufuv1.ListBankCardsRequest{})
	if len(list.Cards) != 2 || list.Cards[0].Id != second.Id {
		t.Fatalf("after unbind and bind: %v", list)
	}

	// The full numbers are nowhere: not in a response, the log or the audit log.
	audit := exportAudit(t, a.live.AdminURL(), auditTok)
	for _, n := range []string{icbc, ccb, cmb, "6222 0202 0011 2233 446"} {
		for where, text := range map[string]string{"list response": string(js), "log": logs.String(), "audit log": audit} {
			if strings.Contains(text, n) {
				t.Errorf("card number %s in the %s", n, where)
			}
		}
	}
	if strings.Contains(audit, "13800001111") {
		t.Error("reserved phone in clear in the audit log")
	}
	for _, action := range []string{`"bankcard.bind"`, `"bankcard.unbind"`, `"bankcard.bind.attempt"`, `"denied"`} {
		if !strings.Contains(audit, action) {
			t.Errorf("audit log has no %s", action)
		}
	}
}

func TestBankCardBindAttemptsAreLimited(t *testing.T) {
	a, _, _ := cardAppliance(t, nil)
	_, cards := a.verifiedCardHolder("13800003333", "card-rate")
	var err error
	for i := range 11 {
		_, err = cards.BindBankCard(bg, &hufuv1.BindBankCardRequest{RequestId: "bind-rate-" + string(rune('a'+i)) + "xxxxxx",
			CardNumber: "6222020200112233446", ReservedPhone: "13800000000"})
		if i < 10 {
			wantCode(t, err, codes.FailedPrecondition, "")
		}
	}
	wantCode(t, err, codes.ResourceExhausted, "")
}

// TestKEKRotationRewrapsCardNumbers: a KEK rotation rewraps the wrapped card numbers too, so
// the old KEK can be destroyed.
func TestKEKRotationRewrapsCardNumbers(t *testing.T) {
	a := startAdminAppliance(t, nil)
	_, cards := a.verifiedCardHolder("13800007777", "card-kek")
	for i, n := range []string{"6222020200112233446", "6217001234567890122"} {
		if _, err := cards.BindBankCard(bg, &hufuv1.BindBankCardRequest{RequestId: fmt.Sprintf("bind-kek-%04d", i), CardNumber: n, ReservedPhone: "13800007777"}); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := a.call("POST", "/kek/rotate", admin.SecurityOfficer); code != http.StatusAccepted {
		t.Fatalf("rotate: %d %s", code, body)
	}
	var st admin.RotationStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		_, body := a.call("GET", "/kek", admin.SecurityOfficer)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != admin.StateRunning || time.Now().After(deadline) {
			break
		}
	}
	if p := st.Progress["cards"]; st.State != admin.StateRewrapped || p == nil || p.Rewrapped != 2 {
		t.Fatalf("rotation %q (%s), cards progress %+v, want 2 card numbers rewrapped", st.State, st.Error, p)
	}
	if code, body := a.call("POST", "/kek/finish", admin.SecurityOfficer); code != http.StatusOK {
		t.Fatalf("finish: %d %s", code, body)
	}
	if l, err := cards.ListBankCards(bg, &hufuv1.ListBankCardsRequest{}); err != nil || len(l.Cards) != 2 {
		t.Fatalf("after the rotation: %v %v", l, err)
	}
}
