// Command hufu is the hufu command-line client: it plays the phone (sign in, verify identity,
// choose a platform, hold one share of split SM2 keys and sign, decrypt and refresh with
// them) and, with a client certificate, a business system or a bid-opening system, against a
// running hufud. verify and encrypt are standard SM2 and, like audit verify and opening
// verify, need no daemon. Run "hufu help" for the commands.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"google.golang.org/grpc/status"
)

const usage = `usage: hufu [global flags] COMMAND [flags]

Commands:
  login [-phone P] [-code C | -password-stdin | -wechat CODE | -carrier TOKEN]
                          sign in (SMS code by default; the development code is picked up)
  whoami                  show the signed-in account
  logout                  end the session
  platform list|current   list platforms, show the chosen one
  platform use ID         choose a platform
  verify-identity cfca -name N -id ID
  verify-identity face -name N -id ID        (development: completes at once)
  verify-identity bank-card -name N -id ID -card NUMBER -reserved-phone P
  password set -new P [-current P]
  password reset -phone P -new P            (SMS code to the number)
  phone change -current-phone P -new-phone P (SMS codes to both numbers)

Split keys (this device holds one share, the appliance the other):
  key new [-label L] [-pin P]                create a key (needs a verified identity)
  key list                                   the account's keys, and which are on this device
  key show [-pem] KEY                        status and public key (-pem: the PEM only, offline)
  key refresh KEY                            new shares, same public key (resumes if interrupted)
  sign -key K -in FILE [-out FILE] [-id ID]  SM2 signature, ASN.1 DER (default FILE.sig);
                                             several files: sign -key K FILE... (one batch)
  verify -pub FILE|-key K -in FILE [-sig FILE] [-id ID]
                                             standard SM2 verification (no daemon)
  encrypt -pub FILE|-key K -in FILE [-out FILE] [-asn1]
                                             standard SM2 encryption, C1C3C2 (no daemon)
  decrypt -key K -in FILE [-out FILE]        two-party decryption; several files: one batch
  pin change -key K                          change the certificate PIN
  pin reset -key K -phone P [-code C]        forgot the PIN: reset by SMS code, unlocks the key
  usage -key K [-n N]                        the key's usage records, newest first
  The certificate PIN comes from -pin, else HUFU_PIN, else a prompt. Shares are kept in
  HOME/keys, sealed under HOME/device.key (0600; keep it out of backups of HOME/keys).

Certificates (seed manual §1.5, §1.7, §1.8.1; each subcommand takes -h):
  cert apply -key K [-years N] [-platforms P,...] [-ca ID] [-sign-letter FILE | -letter SCAN]
  cert orders|order|pay|cancel|reorder   follow an application: 审核中 → 待支付 → 已完成 / 已取消
  cert download|list|renew|upgrade|label|check|messages
  cert revoke SERIAL -reason R           irreversible: the server share is destroyed
  review list|letter|approve|reject      the operators' review desk (needs -cert/-key of a
                                         system client allowed hufu.v1.ReviewService)

Enterprises (seed manual §1.6, §1.7.4.4; "hufu enterprise" alone lists every subcommand):
  enterprise search QUERY | claim ... | list | show USCC | members USCC
  enterprise join -uscc U -admin-name N -admin-phone P | join -invite PAYLOAD
  enterprise applications|withdraw|approve|return     join applications and decisions
  enterprise invite USCC                              an invite QR code for staff to scan
  enterprise register-device|grant|accept|recall|records   the enterprise key on staff devices
  enterprise transfer|accept-transfer                 转移 the administrator role
  enterprise transfer-apply ... | transfers [ID]     对公打款认证 (corporate-transfer verification)
  reconcile import FILE | list | confirm ID -note N | reject ID -reason R
                                         the reconciliation desk (needs -cert/-key of a system
                                         client allowed hufu.v1.ReconciliationService)

Seals (seed manual §1.8.4, §1.5.1):
  seal create -name N -type official|contract|legal-representative|finance|personal|signature
              -image PNG [-enterprise USCC] [-serial S]
  seal list [-enterprise USCC] | show SEAL [-o FILE] | disable|enable SEAL
  seal authorise|unauthorise SEAL USER        an enterprise's administrator, for its staff

Scan sessions of business systems (seed manual §2, §3.1):
  rp bind|login|sign|generate|auth [-platform ID] [-reference REF] [-ttl D] [-roots PEM]
       [-enterprise-name N -uscc U | -person-name N -id ID] [-in FILE...] [-seal]
                          a business system (needs -cert/-key of a system client allowed
                          hufu.v1.ScanService): shows the QR code, follows the session and
                          checks the result (sign: FILE.p7s; generate: also FILE.env and C1)
  rp bindings [-reference REF] | rp unbind BINDING | rp resolve SERIAL   the system's bindings
  scan PAYLOAD [-cert SERIAL] [-seal SEAL] [-decline REASON] [-pin P]
                          the phone: checks the code under the scan key pinned on first use,
                          shows what is asked and answers it
  scan bindings | scan unbind SYSTEM BINDING  your certificates' bindings to business systems
  open-bid -key K -in FILE.env [-out FILE]   open an enveloped bid file (two-party decryption)

Bid openings (开标, seed manual §3.1; each subcommand takes -h; all but verify need -cert/-key
of a system client allowed hufu.v1.OpeningService):
  opening create -project CODE -name NAME [-platform ID] (-start TIME | -in DURATION)
                 [-window DURATION] [-result-key PEM]
  opening register ID -cert SERIAL FILE... | register ID -envelope ENVELOPE -cert SERIAL -in FILE
                          a bid's SM2 key ciphertext (C1C3C2 or ASN.1) or hufu-enveloped file
  opening seal|show|envelopes|close ID | opening list
  opening qr ID [-hall] [-ttl D] [-wait]     a DECRYPT code: bidders consent with hufu scan
  opening release ID [-out DIR] [-envelope ENVELOPE]... [-again] [-result-key-private PEM]
                          the consented envelopes' SM4 keys to DIR/ENVELOPE.key
  opening report ID -o FILE [-key-out FILE]  the signed opening report of a closed opening
  opening verify FILE -key PEM [-audit-log EXPORT]
                                             verify a report offline against the audit public
                                             key (GET /audit/public-key; no daemon), and tie it
                                             into an audit export

Auditing (no daemon):
  audit verify -log FILE -key PEM      verify an audit export (GET /audit/export) against the
                                       audit public key; names the first bad record

Measuring:
  bench [-op sign|sign-batch|decrypt|decrypt-batch] [-batch N] [-c N] [-d DURATION]
        [-rate CALLS/S] [-daemon-pid PID] [-json FILE]
                          load a development daemon with an ephemeral key; report items/s,
                          latency percentiles and the daemon's CPU per item beside the raw
                          server step (scripts/bench.sh runs the standard scenario)
  bench -op opening -bidders N -envelopes M [-concurrency C] [-pid PID] [-json FILE]
                          a whole bid opening: N certified bidders, N×M envelopes, consent
                          through the hall code (C at once), one release checked key by key
                          against the raw ServerShare.Release, the report verified

Other:
  version                 the version, VCS revision (and whether modified) and Go version

Global flags (environment in brackets):
  -addr HOST:PORT   daemon address [HUFU_ADDR] (default 127.0.0.1:7443)
  -daemon-dir DIR   a local daemon's data directory, for its CA and development SMS outbox
                    [HUFU_DAEMON_DIR] (default .hufu)
  -ca FILE          CA certificate of the daemon [HUFU_CA] (default DIR/tls/ca.pem)
  -cert, -key FILE  client certificate for system calls [HUFU_CERT, HUFU_KEY]
  -home DIR         where the CLI keeps its session and device id [HUFU_HOME]
                    (default ~/.config/hufu)`

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hufu:", describe(err))
		os.Exit(1)
	}
}

// describe turns an error into the one line the user sees. A gRPC status error wrapped with
// context ("client: open key K: ...") keeps the context and loses the "rpc error" noise.
func describe(err error) string {
	var grpcErr interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &grpcErr) {
		return err.Error()
	}
	st := grpcErr.GRPCStatus()
	prefix := strings.TrimSuffix(err.Error(), grpcErr.(error).Error())
	// "ResourceExhausted" -> "resource exhausted"
	var words strings.Builder
	for i, r := range st.Code().String() {
		if i > 0 && unicode.IsUpper(r) {
			words.WriteByte(' ')
		}
		words.WriteRune(unicode.ToLower(r))
	}
	return words.String() + ": " + prefix + st.Message()
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type cli struct {
	addr, daemonDir, ca, cert, key, home string
	stdin                                io.Reader
	in                                   *bufio.Reader
	out, errOut                          io.Writer
	state                                state
}

// state is what the CLI remembers between runs, in HOME/state.json (0600).
type state struct {
	DeviceID     string `json:"device_id"`
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	defer func() {
		if errors.Is(err, flag.ErrHelp) { // -h: the usage was printed, as asked
			err = nil
		}
	}()
	c := &cli{stdin: stdin, in: bufio.NewReader(stdin), out: stdout, errOut: stderr}
	home, _ := os.UserConfigDir()
	fs := flag.NewFlagSet("hufu", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(stderr, usage) }
	fs.StringVar(&c.addr, "addr", env("HUFU_ADDR", "127.0.0.1:7443"), "")
	fs.StringVar(&c.daemonDir, "daemon-dir", env("HUFU_DAEMON_DIR", ".hufu"), "")
	fs.StringVar(&c.ca, "ca", env("HUFU_CA", ""), "")
	fs.StringVar(&c.cert, "cert", env("HUFU_CERT", ""), "")
	fs.StringVar(&c.key, "key", env("HUFU_KEY", ""), "")
	fs.StringVar(&c.home, "home", env("HUFU_HOME", filepath.Join(home, "hufu")), "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.ca == "" {
		c.ca = filepath.Join(c.daemonDir, "tls", "ca.pem")
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	cmd, sub := rest[0], rest[1:]
	switch cmd { // offline: no daemon, no session
	case "version":
		fmt.Fprintln(stdout, "hufu", buildinfo.Read())
		return nil
	case "verify":
		return c.verify(sub)
	case "encrypt":
		return c.encrypt(sub)
	case "bench":
		return c.bench(context.Background(), sub)
	case "audit":
		return c.audit(sub)
	case "opening":
		if offline, err := c.openingOffline(sub); offline {
			return err
		}
	case "key":
		// key show -pem reads the keystore in HOME only: it must not need the daemon's CA,
		// which by default is found relative to the working directory (.hufu/tls/ca.pem).
		if len(sub) > 0 && sub[0] == "show" && pemOnly(sub[1:]) {
			return c.keyShow(context.Background(), nil, sub[1:])
		}
	}
	cfg := client.Config{Addr: c.addr, CAFile: c.ca, ClientCertFile: c.cert, ClientKeyFile: c.key}
	if wantsHelp(sub) {
		// The command prints its usage before any call (the connection is lazy), so it needs
		// neither the daemon's CA and a client certificate nor a state file.
		cfg = client.Config{Addr: c.addr}
	} else if err := c.load(); err != nil {
		return err
	}
	cfg.DeviceID = c.state.DeviceID
	conn, err := client.Dial(cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// An expired access token is exchanged for a new pair with the refresh token, once, and
	// the pair is kept for the next run.
	conn.SetSession(c.state.AccessToken, c.state.RefreshToken, func(s *hufuv1.Session) error {
		c.state.AccessToken, c.state.RefreshToken = s.GetAccessToken(), s.GetRefreshToken()
		return c.save()
	})
	// Batches of many files run longer than one call.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch cmd {
	case "login":
		return c.login(ctx, conn, sub)
	case "whoami":
		return c.whoami(ctx, conn)
	case "logout":
		return c.logout(ctx, conn)
	case "platform":
		return c.platform(ctx, conn, sub)
	case "verify-identity":
		return c.verifyIdentity(ctx, conn, sub)
	case "password":
		return c.password(ctx, conn, sub)
	case "phone":
		return c.phone(ctx, conn, sub)
	case "key":
		return c.keyCmd(ctx, conn, sub)
	case "sign":
		return c.sign(ctx, conn, sub)
	case "decrypt":
		return c.decrypt(ctx, conn, sub)
	case "pin":
		return c.pinCmd(ctx, conn, sub)
	case "usage":
		return c.usageCmd(ctx, conn, sub)
	case "cert":
		return c.certCmd(ctx, conn, sub)
	case "review":
		return c.reviewCmd(ctx, conn, sub)
	case "reconcile":
		return c.reconcileCmd(ctx, conn, sub)
	case "enterprise":
		return c.enterpriseCmd(ctx, conn, sub)
	case "seal":
		return c.sealCmd(ctx, conn, sub)
	case "rp":
		return c.rpCmd(ctx, conn, sub)
	case "scan":
		return c.scan(ctx, conn, sub)
	case "open-bid":
		return c.openBid(ctx, conn, sub)
	case "opening":
		return c.openingCmd(ctx, conn, sub)
	}
	return fmt.Errorf("unknown command %q (hufu help lists them)", cmd)
}

// pemOnly says whether key show's arguments ask for the PEM only.
func pemOnly(args []string) bool {
	for _, a := range args {
		switch a {
		case "-pem", "--pem", "-pem=true", "--pem=true":
			return true
		}
	}
	return false
}

// wantsHelp says whether a command's arguments ask for its usage.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

func (c *cli) statePath() string { return filepath.Join(c.home, "state.json") }

func (c *cli) load() error {
	b, err := os.ReadFile(c.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &c.state); err != nil {
			return fmt.Errorf("%s: %w", c.statePath(), err)
		}
	}
	if c.state.DeviceID == "" {
		var b [8]byte
		rand.Read(b[:])
		c.state.DeviceID = "cli-" + hex.EncodeToString(b[:])
		return c.save()
	}
	return nil
}

func (c *cli) save() error {
	if err := os.MkdirAll(c.home, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c.state, "", "  ")
	tmp := c.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath())
}

func (c *cli) device() *hufuv1.Device {
	host, _ := os.Hostname()
	return &hufuv1.Device{Id: c.state.DeviceID, Name: "hufu CLI on " + host}
}

func (c *cli) prompt(question string) (string, error) {
	fmt.Fprint(c.out, question)
	line, err := c.in.ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading %s: %w", strings.TrimSuffix(question, ": "), err)
	}
	return strings.TrimSpace(line), nil
}

// smsCode obtains a code: the given one as is — asking for another would replace it, or be
// refused by the send limit — or else it asks the daemon to send one and takes it from the
// development outbox (the daemon writes codes there in development) or from the user.
func (c *cli) smsCode(ctx context.Context, conn *client.Conn, phone string, purpose hufuv1.SmsPurpose, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if _, err := conn.Accounts.SendSmsCode(ctx, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: purpose}); err != nil {
		return "", err
	}
	outbox := filepath.Join(c.daemonDir, "dev-sms.jsonl")
	if code, err := accounts.LatestDevCode(outbox, phone, devPurposes[purpose]); err == nil {
		fmt.Fprintf(c.out, "development code %s taken from %s\n", code, outbox)
		return code, nil
	}
	return c.prompt("SMS code: ")
}

var devPurposes = map[hufuv1.SmsPurpose]accounts.Purpose{
	hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN:               accounts.PurposeSignIn,
	hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE:          accounts.PurposeChangePhone,
	hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD:        accounts.PurposeResetPassword,
	hufuv1.SmsPurpose_SMS_PURPOSE_RESET_CERTIFICATE_PIN: accounts.PurposeResetCertificate,
}

func (c *cli) signedIn(s *hufuv1.Session, a *hufuv1.Account, registered bool) error {
	c.state.AccessToken, c.state.RefreshToken = s.GetAccessToken(), s.GetRefreshToken()
	if err := c.save(); err != nil {
		return err
	}
	verb := "signed in as"
	if registered {
		verb = "registered and signed in as"
	}
	fmt.Fprintf(c.out, "%s %s (account %s)\n", verb, a.GetPhoneMasked(), a.GetId())
	return nil
}

func (c *cli) login(ctx context.Context, conn *client.Conn, args []string) error {
	fs := flag.NewFlagSet("hufu login", flag.ContinueOnError)
	phone := fs.String("phone", "", "mobile number")
	code := fs.String("code", "", "an SMS code already received: no new one is requested (default: request one, then the development outbox, else prompt)")
	passwordStdin := fs.Bool("password-stdin", false, "sign in with the password read from standard input")
	wechat := fs.String("wechat", "", "WeChat authorisation code")
	carrier := fs.String("carrier", "", "carrier one-click login token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *carrier != "":
		r, err := conn.Accounts.SignInWithCarrier(ctx, &hufuv1.SignInWithCarrierRequest{CarrierToken: *carrier, Device: c.device()})
		if err != nil {
			return err
		}
		return c.signedIn(r.Session, r.Account, r.Registered)
	case *wechat != "":
		r, err := conn.Accounts.SignInWithWechat(ctx, &hufuv1.SignInWithWechatRequest{AuthCode: *wechat, Device: c.device()})
		if err != nil {
			return err
		}
		if r.BindingTicket == "" {
			return c.signedIn(r.Session, r.Account, false)
		}
		if *phone == "" {
			return errors.New("this WeChat account is not bound yet: run again with -phone to bind it")
		}
		sms, err := c.smsCode(ctx, conn, *phone, hufuv1.SmsPurpose_SMS_PURPOSE_BIND_WECHAT, *code)
		if err != nil {
			return err
		}
		b, err := conn.Accounts.BindWechatPhone(ctx, &hufuv1.BindWechatPhoneRequest{BindingTicket: r.BindingTicket, Phone: *phone, Code: sms, Device: c.device()})
		if err != nil {
			return err
		}
		return c.signedIn(b.Session, b.Account, b.Registered)
	}
	if *phone == "" {
		return errors.New("-phone is required")
	}
	if *passwordStdin {
		pw, err := c.prompt("")
		if err != nil {
			return err
		}
		r, err := conn.Accounts.SignInWithPassword(ctx, &hufuv1.SignInWithPasswordRequest{Phone: *phone, Password: pw, Device: c.device()})
		if err != nil {
			return err
		}
		return c.signedIn(r.Session, r.Account, false)
	}
	sms, err := c.smsCode(ctx, conn, *phone, hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN, *code)
	if err != nil {
		return err
	}
	r, err := conn.Accounts.SignInWithSmsCode(ctx, &hufuv1.SignInWithSmsCodeRequest{Phone: *phone, Code: sms, Device: c.device()})
	if err != nil {
		return err
	}
	return c.signedIn(r.Session, r.Account, r.Registered)
}

func (c *cli) whoami(ctx context.Context, conn *client.Conn) error {
	r, err := conn.Accounts.GetAccount(ctx, &hufuv1.GetAccountRequest{})
	if err != nil {
		return err
	}
	a := r.Account
	fmt.Fprintf(c.out, "account   %s\nphone     %s\npassword  %v\nwechat    %v\nplatform  %s\n", a.Id, a.PhoneMasked, a.HasPassword, a.WechatBound, orNone(a.CurrentPlatformId))
	if a.Identity.GetVerified() {
		fmt.Fprintf(c.out, "identity  %s %s (%s)\n", a.Identity.NameMasked, a.Identity.IdNumberMasked, methodName(a.Identity.Method))
	} else {
		fmt.Fprintln(c.out, "identity  not verified (hufu verify-identity)")
	}
	return nil
}

func (c *cli) logout(ctx context.Context, conn *client.Conn) error {
	if c.state.AccessToken == "" {
		return errors.New("not signed in")
	}
	_, err := conn.Accounts.SignOut(ctx, &hufuv1.SignOutRequest{})
	c.state.AccessToken, c.state.RefreshToken = "", ""
	if serr := c.save(); serr != nil {
		return serr
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(c.out, "signed out")
	return nil
}

func (c *cli) platform(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 {
		return errors.New("platform list|current|use ID")
	}
	switch args[0] {
	case "list":
		r, err := conn.Platforms.ListPlatforms(ctx, &hufuv1.ListPlatformsRequest{})
		if err != nil {
			return err
		}
		for _, p := range r.Platforms {
			fmt.Fprintf(c.out, "%-16s %s  %s\n", p.Id, p.Region, p.Name)
		}
		return nil
	case "current":
		r, err := conn.Platforms.GetCurrentPlatform(ctx, &hufuv1.GetCurrentPlatformRequest{})
		if err != nil {
			return err
		}
		if r.Platform == nil {
			fmt.Fprintln(c.out, "no platform chosen (hufu platform use ID)")
			return nil
		}
		fmt.Fprintf(c.out, "%s  %s\n", r.Platform.Id, r.Platform.Name)
		return nil
	case "use":
		if len(args) != 2 {
			return errors.New("platform use ID")
		}
		r, err := conn.Platforms.SelectPlatform(ctx, &hufuv1.SelectPlatformRequest{PlatformId: args[1]})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "now using %s (%s)\n", r.Platform.Id, r.Platform.Name)
		return nil
	}
	return fmt.Errorf("unknown platform command %q", args[0])
}

func (c *cli) verifyIdentity(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 {
		return errors.New("verify-identity cfca|face|bank-card [flags]")
	}
	fs := flag.NewFlagSet("hufu verify-identity "+args[0], flag.ContinueOnError)
	name := fs.String("name", "", "legal name")
	id := fs.String("id", "", "18-character resident ID number")
	card := fs.String("card", "", "bank card number")
	reserved := fs.String("reserved-phone", "", "phone number reserved at the bank")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var status *hufuv1.IdentityStatus
	switch args[0] {
	case "cfca":
		r, err := conn.Identity.VerifyWithCfca(ctx, &hufuv1.VerifyWithCfcaRequest{Name: *name, IdNumber: *id})
		if err != nil {
			return err
		}
		status = r.Identity
	case "face":
		s, err := conn.Identity.StartFaceVerification(ctx, &hufuv1.StartFaceVerificationRequest{Name: *name, IdNumber: *id})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "open in Alipay: %s\n", s.Url)
		if _, err := c.prompt("press Enter when the face check is done: "); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		r, err := conn.Identity.CompleteFaceVerification(ctx, &hufuv1.CompleteFaceVerificationRequest{CertifyId: s.CertifyId})
		if err != nil {
			return err
		}
		status = r.Identity
	case "bank-card":
		r, err := conn.Identity.VerifyWithBankCard(ctx, &hufuv1.VerifyWithBankCardRequest{Name: *name, IdNumber: *id, CardNumber: *card, ReservedPhone: *reserved})
		if err != nil {
			return err
		}
		status = r.Identity
	default:
		return fmt.Errorf("unknown method %q: cfca, face or bank-card", args[0])
	}
	fmt.Fprintf(c.out, "verified: %s %s (%s)\n", status.NameMasked, status.IdNumberMasked, methodName(status.Method))
	return nil
}

func (c *cli) password(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 {
		return errors.New("password set|reset [flags]")
	}
	fs := flag.NewFlagSet("hufu password "+args[0], flag.ContinueOnError)
	current := fs.String("current", "", "current password (when one is set)")
	next := fs.String("new", "", "new password: 8-64 characters with a letter and a digit")
	phone := fs.String("phone", "", "the account's number (reset)")
	code := fs.String("code", "", "SMS code (reset; default: development outbox, else prompt)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "set":
		if _, err := conn.Accounts.SetPassword(ctx, &hufuv1.SetPasswordRequest{CurrentPassword: *current, NewPassword: *next}); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "password set")
		return nil
	case "reset":
		sms, err := c.smsCode(ctx, conn, *phone, hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD, *code)
		if err != nil {
			return err
		}
		if _, err := conn.Accounts.ResetPassword(ctx, &hufuv1.ResetPasswordRequest{Phone: *phone, Code: sms, NewPassword: *next}); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "password reset; every session of the account was signed out")
		return nil
	}
	return fmt.Errorf("unknown password command %q", args[0])
}

func (c *cli) phone(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 || args[0] != "change" {
		return errors.New("phone change -current-phone P -new-phone P")
	}
	fs := flag.NewFlagSet("hufu phone change", flag.ContinueOnError)
	currentPhone := fs.String("current-phone", "", "the account's current mobile number (a code goes there too)")
	newPhone := fs.String("new-phone", "", "the new mobile number")
	currentCode := fs.String("current-code", "", "SMS code sent to the current number (default: development outbox, else prompt)")
	code := fs.String("code", "", "SMS code sent to the new number (default: development outbox, else prompt)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *currentPhone == "" {
		return errors.New("-current-phone is required: moving an account needs a code to its current number")
	}
	current, err := c.smsCode(ctx, conn, *currentPhone, hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE, *currentCode)
	if err != nil {
		return err
	}
	sms, err := c.smsCode(ctx, conn, *newPhone, hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE, *code)
	if err != nil {
		return err
	}
	r, err := conn.Accounts.ChangePhone(ctx, &hufuv1.ChangePhoneRequest{NewPhone: *newPhone, Code: sms, CurrentCode: current})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "phone changed to %s; other sessions of the account were signed out\n", r.Account.PhoneMasked)
	return nil
}

func methodName(m hufuv1.IdentityMethod) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "IDENTITY_METHOD_"))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
