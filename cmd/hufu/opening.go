package main

// hufu opening: a bid-opening system (开评标系统, seed manual §3.1) simulated on the command
// line against hufu.v1.OpeningService. It creates an opening, registers the bids' envelopes
// (per bid, the SM2 ciphertext of its SM4 key to the bidder's certificate), seals it, shows
// the DECRYPT code the bidders scan (hufu scan, in another terminal) to consent, releases
// the consented keys in bulk, closes the opening and fetches its signed report. The calls
// need a client certificate (global -tls-cert, -tls-key; HUFU_TLS_CERT, HUFU_TLS_KEY) of a system client
// allowed hufu.v1.OpeningService, as for hufu rp; a development daemon allows its CLI
// certificate DIR/tls/cli.pem (key DIR/tls/cli-key.pem).
//
// hufu opening verify is the auditor's check of a report, offline (package bidopening).
//
// Files it writes: OUT/<envelope id>.key, the released SM4 key (16 bytes, 0600), or
// OUT/<envelope id>.key.sm2, that key as the SM2 ciphertext (C1C3C2) to the opening's
// result key when no private key was given to decrypt it; the report exactly as the
// appliance sent it (JSON Lines, package bidopening).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cms"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/store"
	urfave "github.com/urfave/cli/v2"
)

const openingUsage = `opening create -project CODE -name NAME [-platform ID] (-start TIME | -in DURATION) [-window DURATION] [-result-key PEM]
opening register ID -cert SERIAL FILE...  |  opening register ID -envelope ENVELOPE -cert SERIAL -in FILE
opening seal ID | opening show ID | opening list | opening envelopes ID
opening qr ID [-hall] [-ttl DURATION] [-wait]
opening release ID [-out DIR] [-envelope ENVELOPE]... [-again] [-result-key-private PEM]
opening close ID | opening report ID -o FILE [-key-out FILE]
opening verify FILE -key AUDIT_PUBLIC_KEY.pem          (offline: no daemon)
Every subcommand takes -h. All but verify need -tls-cert/-tls-key of a system client allowed
hufu.v1.OpeningService (before the command: hufu -tls-cert C -tls-key K opening ...).`

// openingHelp is each subcommand's synopsis and description, for -h.
var openingHelp = map[string]struct{ synopsis, text string }{
	"create": {"create -project CODE -name NAME [-platform ID] (-start TIME | -in DURATION) [-window DURATION] [-result-key PEM]",
		`Creates a bid opening and prints its id and window. The window opens at the opening time
(开标时间: -start, or -in from now) and stays open for -window; envelopes are registered
until the opening time, consent and release happen inside the window. With -result-key the
appliance encrypts every released SM4 key to that SM2 public key instead of sending it in
clear.`},
	"register": {"register ID -cert SERIAL FILE...  |  register ID -envelope ENVELOPE -cert SERIAL -in FILE",
		`Registers bids' envelopes, until the opening time. Each FILE is one bid's SM2 key-transport
ciphertext to the bidder's certificate SERIAL: raw SM2 ciphertext, C1C3C2 (C1 compressed or
not) or GM/T 0009 ASN.1 — not the old C1C2C3 layout, which cannot be told from C1C3C2:
convert it first — or a bid file enveloped by hufu (a CMS EnvelopedData, as hufu rp generate
writes FILE.env, with one recipient), whose key transport is registered. The envelope id is
the file's base name with every character outside [A-Za-z0-9._-] replaced by "_" (at most
64), or -envelope for a single file. Registering the same envelope again is harmless.`},
	"seal": {"seal ID", `Seals the opening now: the manifest of its envelopes is fixed and audited, and no envelope
is added or removed after. An opening not sealed by its opening time is sealed then.`},
	"show":      {"show ID", "Shows an opening: its project, window, state, manifest and counts."},
	"list":      {"list", "Lists this system's openings, newest first."},
	"envelopes": {"envelopes ID", "Lists an opening's envelopes with their consent and release state."},
	"qr": {"qr ID [-hall] [-ttl DURATION] [-wait]",
		`Creates a DECRYPT scan session (扫码解密) of the opening and prints its QR code and payload for
a bidder to scan with the phone (hufu scan PAYLOAD): the bidder is shown the opening and
their envelopes and consents to their release. With -hall the code is for the whole opening
hall: each bidder who scans it gets a session of their own, until the code expires.`},
	"release": {"release ID [-out DIR] [-envelope ENVELOPE]... [-again] [-result-key-private PEM]",
		`Releases the consented envelopes' SM4 keys inside the window, streaming: each key is written
to DIR/ENVELOPE.key (0600) as it arrives and one line per envelope says ok or why it failed;
a summary follows, and the command fails if any envelope did. When the opening has a result
key, the keys arrive encrypted to it: -result-key-private decrypts them, else each is written
as DIR/ENVELOPE.key.sm2 (SM2 C1C3C2). Envelopes released before are skipped unless -again.`},
	"close": {"close ID", `Closes the opening (allowed from the opening time): no consent or release after. The
appliance signs the opening report; fetch it with hufu opening report.`},
	"report": {"report ID -o FILE [-key-out FILE]",
		`Writes the signed report of a closed opening (JSON Lines, package bidopening) to FILE, for
hufu opening verify. -key-out also writes the appliance's audit public key (PEM) that signs
it, for convenience only: an auditor obtains that key independently, from the admin surface
(GET /audit/public-key), not from the appliance whose report is checked.`},
	"verify": {"verify FILE -key AUDIT_PUBLIC_KEY.pem [-audit-log EXPORT]",
		`Verifies an opening report offline (no daemon): the appliance's signature under its audit
public key (GET /audit/public-key on the admin listener; obtain it independently of the
report), the manifest, every consent's certificate, signature and statement, the windows and
the releases. Prints a summary, or fails naming the first bad line.

With -audit-log (GET /audit/export), it also verifies the audit log under the same key and
ties the report into it: the log's record at the report's audit position must have the
report's head hash, and its opening.report record must name this file's SHA-256 — so the
report is the one the appliance made, in its tamper-evident log, and no other.`},
}

var envelopeIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// openingShort is each subcommand's line in the group's list.
var openingShort = map[string]string{
	"create":    "create a bid opening: its project and window",
	"register":  "register bids' envelopes, until the opening time",
	"seal":      "seal the opening: its manifest of envelopes is fixed",
	"show":      "show an opening",
	"list":      "this system's openings, newest first",
	"envelopes": "an opening's envelopes with their consent and release state",
	"qr":        "a DECRYPT code (扫码解密) for the bidders to consent with hufu scan",
	"release":   "release the consented envelopes' SM4 keys, streaming, inside the window",
	"close":     "close the opening (from the opening time)",
	"report":    "write the signed report of a closed opening",
	"verify":    "verify an opening report offline (no daemon)",
}

// openingVerb is a subcommand's help: its line in the list and its description.
func openingVerb(sub string) (usage, desc string) {
	h := openingHelp[sub]
	return openingShort[sub], "hufu opening " + h.synopsis + "\n\n" + h.text
}

// openingCommands: bid openings (开标, seed manual §3.1).
func (c *cli) openingCommands() []*urfave.Command {
	return []*urfave.Command{
		group("opening", "bid openings (开标): a system client allowed hufu.v1.OpeningService; verify is offline", "seed manual §3.1\n\n"+openingUsage,
			c.openingCreateCommand(), c.openingRegisterCommand(),
			c.openingOneCommand("seal"), c.openingOneCommand("show"), c.openingListCommand(), c.openingEnvelopesCommand(),
			c.openingQRCommand(), c.openingReleaseCommand(), c.openingOneCommand("close"), c.openingReportCommand(),
			c.openingVerifyCommand()),
	}
}

func openingArgsError(sub string) error {
	return usagef("usage: hufu opening %s (hufu opening %s -h explains)", openingHelp[sub].synopsis, sub)
}

// openingSystem is the OpeningService client of the system certificate the CLI was given.
func (c *cli) openingSystem(conn *client.Conn) (hufuv1.OpeningServiceClient, error) {
	if err := c.needCert("a bid-opening system", "hufu.v1.OpeningService"); err != nil {
		return nil, err
	}
	return hufuv1.NewOpeningServiceClient(conn.ClientConn()), nil
}

func (c *cli) openingCreateCommand() *urfave.Command {
	u, d := openingVerb("create")
	fs := newFlags()
	project := fs.String("project", "", "the project code (项目编号): 1 to 64 characters")
	name := fs.String("name", "", "the project name: 1 to 200 characters")
	platform := fs.String("platform", "demo", "the trading platform (交易平台) of the project")
	startFlag := fs.String("start", "", "the opening `TIME`: RFC 3339 (\"2026-12-01T09:30:00+08:00\") or local time (\"2026-12-01 09:30\")")
	in := fs.Duration("in", 0, "the opening time as a duration from now (instead of -start), such as 30m")
	window := fs.Duration("window", 2*time.Hour, "how long the window stays open from the opening time (the appliance allows at most 7 days)")
	resultKey := fs.String("result-key", "", "file of the system's SM2 public key (PEM or DER SubjectPublicKeyInfo, or the 65-byte point) to encrypt released keys to")
	requestID := fs.String("request-id", "", "idempotency key, 8 to 64 of [A-Za-z0-9._-] (default: a new one; to retry a create whose answer was lost, pass the same)")
	return c.command(verb{name: "create", usage: u, desc: d, nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		var err error
		switch {
		case len(pos) != 0:
			return fmt.Errorf("opening create takes no arguments (%q); %w", pos[0], openingArgsError("create"))
		case *project == "" || *name == "":
			return fmt.Errorf("-project and -name are required; %w", openingArgsError("create"))
		case (*startFlag == "") == (*in == 0):
			return fmt.Errorf("give the opening time as exactly one of -start TIME and -in DURATION; %w", openingArgsError("create"))
		case *in < 0:
			return usagef("-in must be a positive duration: the opening time lies in the future")
		case *window <= 0:
			return usagef("-window must be a positive duration")
		}
		start := time.Now().Add(*in).Truncate(time.Second)
		if *startFlag != "" {
			if start, err = parseOpeningTime(*startFlag); err != nil {
				return err
			}
		}
		req := &hufuv1.CreateOpeningRequest{RequestId: *requestID, ProjectCode: *project, ProjectName: *name, PlatformId: *platform,
			WindowStart: timestamppb.New(start), WindowEnd: timestamppb.New(start.Add(*window))}
		if req.RequestId == "" {
			req.RequestId = "opening-" + randomHex(8)
		}
		if *resultKey != "" {
			if req.ResultPublicKey, err = os.ReadFile(*resultKey); err != nil {
				return err
			}
		}
		sys, err := c.openingSystem(conn)
		if err != nil {
			return err
		}
		resp, err := sys.CreateOpening(ctx, req)
		if err != nil {
			return err
		}
		o := resp.Opening
		fmt.Fprintf(c.out, "opening %s created: project %s %s on platform %s\n", o.Id, o.ProjectCode, o.ProjectName, o.PlatformId)
		fmt.Fprintf(c.out, "  window %s – %s\n  %s\n", openingTime(o.WindowStart), openingTime(o.WindowEnd), resultKeyNote(o))
		fmt.Fprintf(c.out, "register envelopes until the opening time: hufu opening register %s -cert SERIAL FILE...\n", o.Id)
		return nil
	}})
}

// parseOpeningTime reads -start: RFC 3339, or a local date and time.
func parseOpeningTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf(`-start %q is not a time: use RFC 3339 ("2026-12-01T09:30:00+08:00") or local time ("2026-12-01 09:30")`, s)
}

func resultKeyNote(o *hufuv1.Opening) string {
	if len(o.ResultPublicKey) == 0 {
		return "no result key: released keys come in clear"
	}
	h := sha256.Sum256(o.ResultPublicKey)
	return fmt.Sprintf("result key SM2 (SHA-256 %x): released keys come encrypted to it", h[:8])
}

// envelopeFile is one file to register: its envelope id and the ciphertext to register.
type envelopeFile struct {
	path, id, kind string
	ciphertext     []byte
}

// readEnvelopeFile takes a bid's key-transport ciphertext from a file: a raw SM2 ciphertext
// (C1C3C2 or ASN.1), or the one recipient's key transport of a CMS EnvelopedData.
func readEnvelopeFile(path string) (ciphertext []byte, kind string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	enc := cosign.DetectEncoding(b)
	_, ctErr := cosign.ParseCiphertext(b, enc)
	if ctErr == nil {
		return b, "SM2 ciphertext, " + enc.String(), nil
	}
	if len(b) > 0 && b[0] == 0x30 {
		_, kt, cmsErr := cms.KeyTransportC1(b, nil)
		if cmsErr == nil {
			return kt, "key transport of a CMS EnvelopedData", nil
		}
		return nil, "", fmt.Errorf("%s: neither an SM2 ciphertext (%v) nor a CMS EnvelopedData with one recipient (%v)", path, ctErr, cmsErr)
	}
	return nil, "", fmt.Errorf("%s: not an SM2 ciphertext (C1C3C2 or ASN.1): %w", path, ctErr)
}

// envelopeIDOf is a file's envelope id: its base name, each character outside
// [A-Za-z0-9._-] replaced by "_", at most 64 characters.
func envelopeIDOf(path string) string {
	id := strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '.' || r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, filepath.Base(path))
	return id[:min(len(id), 64)]
}

func (c *cli) openingRegisterCommand() *urfave.Command {
	u, d := openingVerb("register")
	fs := newFlags()
	serial := fs.String("cert", "", "the serial (hex) of the bidder's certificate the files are encrypted to")
	envID := fs.String("envelope", "", "the envelope id of a single file (default: the file's base name, sanitised)")
	in := fs.String("in", "", "the file (with -envelope; files may also follow the opening id)")
	return c.command(verb{name: "register", usage: u, desc: d, args: "ID FILE...", nargs: someArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		id, files := pos[0], pos[1:]
		if *in != "" {
			files = append(files, *in)
		}
		switch {
		case *serial == "":
			return fmt.Errorf("-cert SERIAL is required: the bidder's certificate the files are encrypted to; %w", openingArgsError("register"))
		case len(files) == 0:
			return fmt.Errorf("no file to register; %w", openingArgsError("register"))
		case *envID != "" && len(files) != 1:
			return usagef("-envelope names one envelope, but %d files were given", len(files))
		case *envID != "" && !envelopeIDRE.MatchString(*envID):
			return usagef("-envelope %q: an envelope id is 1 to 64 of [A-Za-z0-9._-]", *envID)
		}
		var envs []envelopeFile
		seen := map[string]string{}
		for _, f := range files {
			ct, kind, err := readEnvelopeFile(f)
			if err != nil {
				return err
			}
			e := envelopeFile{path: f, id: *envID, kind: kind, ciphertext: ct}
			if e.id == "" {
				e.id = envelopeIDOf(f)
			}
			if prev, dup := seen[e.id]; dup {
				return fmt.Errorf("%s and %s would both be envelope %s: register one of them with -envelope ID", prev, f, e.id)
			}
			seen[e.id] = f
			envs = append(envs, e)
		}
		sys, err := c.openingSystem(conn)
		if err != nil {
			return err
		}
		const perCall = 1000 // the appliance's bound on one RegisterEnvelopes call
		var added, total uint32
		for from := 0; from < len(envs); from += perCall {
			part := envs[from:min(from+perCall, len(envs))]
			req := &hufuv1.RegisterEnvelopesRequest{OpeningId: id}
			for _, e := range part {
				req.Envelopes = append(req.Envelopes, &hufuv1.EnvelopeRegistration{EnvelopeId: e.id, CertificateSerial: *serial, Ciphertext: e.ciphertext})
			}
			resp, err := sys.RegisterEnvelopes(ctx, req)
			if err != nil {
				if from > 0 {
					return fmt.Errorf("after %d envelopes were registered: %w", from, err)
				}
				return err
			}
			added, total = added+resp.Registered, resp.Envelopes
			for _, e := range part {
				fmt.Fprintf(c.out, "  envelope %s  certificate %s  ← %s (%s)\n", e.id, *serial, e.path, e.kind)
			}
		}
		fmt.Fprintf(c.out, "registered %d new envelope(s) of %d given; opening %s has %d\n", added, len(envs), id, total)
		return nil
	}})
}

// openingOne runs seal, show and close, which take the opening id alone.
func (c *cli) openingOneCommand(sub string) *urfave.Command {
	u, d := openingVerb(sub)
	fs := newFlags()
	var o *outputFormat
	if sub == "show" {
		o = outputFlag(fs)
	}
	return c.command(verb{name: sub, usage: u, desc: d, args: "ID", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		sys, err := c.openingSystem(conn)
		if err != nil {
			return err
		}
		switch sub {
		case "seal":
			resp, err := sys.SealOpening(ctx, &hufuv1.SealOpeningRequest{OpeningId: pos[0]})
			if err != nil {
				return err
			}
			o := resp.Opening
			fmt.Fprintf(c.out, "opening %s sealed: %d envelope(s), manifest SHA-256 %x\n", o.Id, o.Envelopes, o.ManifestSha256)
			fmt.Fprintf(c.out, "at the opening time (%s) show the bidders a code: hufu opening qr %s [-hall]\n", openingTime(o.WindowStart), o.Id)
		case "show":
			resp, err := sys.GetOpening(ctx, &hufuv1.GetOpeningRequest{OpeningId: pos[0]})
			if err != nil {
				return err
			}
			if o.json() {
				return c.emit(o, resp, nil)
			}
			c.printOpening(resp.Opening)
		case "close":
			resp, err := sys.CloseOpening(ctx, &hufuv1.CloseOpeningRequest{OpeningId: pos[0]})
			if err != nil {
				return err
			}
			o := resp.Opening
			fmt.Fprintf(c.out, "opening %s closed at %s: %d envelope(s), %d consented, %d released, %d early attempt(s)\n", o.Id,
				openingTime(o.ClosedAt), o.Envelopes, o.Consented, o.Released, o.EarlyAttempts)
			fmt.Fprintf(c.out, "report SHA-256 %x: hufu opening report %s -o FILE\n", resp.ReportSha256, o.Id)
		}
		return nil
	}})
}

func openingState(s hufuv1.OpeningState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "OPENING_STATE_"))
}

func (c *cli) printOpening(o *hufuv1.Opening) {
	fmt.Fprintf(c.out, "opening    %s (%s)\n", o.Id, openingState(o.State))
	fmt.Fprintf(c.out, "project    %s  %s\n", o.ProjectCode, o.ProjectName)
	fmt.Fprintf(c.out, "platform   %s\n", o.PlatformId)
	fmt.Fprintf(c.out, "window     %s – %s\n", openingTime(o.WindowStart), openingTime(o.WindowEnd))
	fmt.Fprintf(c.out, "created    %s\n", openingTime(o.CreatedAt))
	if o.SealedAt != nil {
		fmt.Fprintf(c.out, "sealed     %s  manifest SHA-256 %x\n", openingTime(o.SealedAt), o.ManifestSha256)
	}
	if o.ClosedAt != nil {
		fmt.Fprintf(c.out, "closed     %s\n", openingTime(o.ClosedAt))
	}
	fmt.Fprintf(c.out, "envelopes  %d, consented %d, released %d, early attempts %d\n", o.Envelopes, o.Consented, o.Released, o.EarlyAttempts)
	fmt.Fprintf(c.out, "results    %s\n", resultKeyNote(o))
}

func (c *cli) openingListCommand() *urfave.Command {
	u, d := openingVerb("list")
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: u, desc: d, nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		sys, err := c.openingSystem(conn)
		if err != nil {
			return err
		}
		n, token, all := 0, "", &hufuv1.ListOpeningsResponse{}
		for {
			resp, err := sys.ListOpenings(ctx, &hufuv1.ListOpeningsRequest{PageSize: 1000, PageToken: token})
			if err != nil {
				return err
			}
			all.Openings = append(all.Openings, resp.Openings...)
			if o.json() {
				if token = resp.NextPageToken; token == "" {
					return c.emit(o, all, nil)
				}
				continue
			}
			for _, o := range resp.Openings {
				fmt.Fprintf(c.out, "%s  %-6s  %s  %s  %s  %d envelope(s)\n", o.Id, openingState(o.State), openingTime(o.WindowStart), o.ProjectCode,
					o.ProjectName, o.Envelopes)
				n++
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if n == 0 {
			fmt.Fprintln(c.out, "no openings (hufu opening create)")
		}
		return nil
	}})
}

func (c *cli) openingEnvelopesCommand() *urfave.Command {
	u, d := openingVerb("envelopes")
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "envelopes", usage: u, desc: d, args: "ID", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		sys, err := c.openingSystem(conn)
		if err != nil {
			return err
		}
		n, token, all := 0, "", &hufuv1.ListEnvelopesResponse{}
		for {
			resp, err := sys.ListEnvelopes(ctx, &hufuv1.ListEnvelopesRequest{OpeningId: pos[0], PageSize: 1000, PageToken: token})
			if err != nil {
				return err
			}
			all.Envelopes = append(all.Envelopes, resp.Envelopes...)
			if o.json() {
				if token = resp.NextPageToken; token == "" {
					return c.emit(o, all, nil)
				}
				continue
			}
			for _, e := range resp.Envelopes {
				consent := "not consented"
				if e.Consented {
					consent = "consented"
				}
				release := "not released"
				if e.Releases > 0 {
					release = fmt.Sprintf("released %d time(s), last %s: %s", e.Releases, openingTime(e.ReleasedAt), e.ReleaseOutcome)
				}
				fmt.Fprintf(c.out, "%s  certificate %s  ciphertext SHA-256 %x…  %s  %s\n", e.EnvelopeId, e.CertificateSerial,
					e.CiphertextSha256[:min(8, len(e.CiphertextSha256))], consent, release)
				n++
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if n == 0 {
			fmt.Fprintf(c.out, "opening %s has no envelopes (hufu opening register)\n", pos[0])
		}
		return nil
	}})
}

func (c *cli) openingQRCommand() *urfave.Command {
	u, d := openingVerb("qr")
	fs := newFlags()
	hall := fs.Bool("hall", false, "a code for the whole opening hall: every bidder scans the same code and answers in a session of their own")
	ttl := fs.Duration("ttl", 0, "how long the code lives, 30s to 30m (default: the appliance's, 3m)")
	reference := fs.String("reference", "", "the system's own reference of the bidder or hall, kept with the session")
	wait := fs.Bool("wait", false, "follow the session until the bidder has answered (not with -hall, whose code lives until -ttl)")
	return c.command(verb{name: "qr", usage: u, desc: d, args: "ID", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *wait && *hall {
			return usagef("-wait follows one bidder's session; a hall code starts a session per bidder (follow the opening with hufu opening envelopes)")
		}
		if _, err := c.openingSystem(conn); err != nil {
			return err
		}
		life := 31 * time.Minute // a followed session may outlive run's deadline for ordinary calls
		if *ttl > 0 {
			life = *ttl + time.Minute
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), life)
		defer cancel()
		scans := hufuv1.NewScanServiceClient(conn.ClientConn())
		resp, err := scans.CreateSession(ctx, &hufuv1.CreateSessionRequest{RequestId: "opening-qr-" + randomHex(8), Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT,
			OpeningId: pos[0], Hall: *hall, Reference: *reference, TtlSeconds: uint32(ttl.Seconds())})
		if err != nil {
			return err
		}
		s := resp.Session
		if err := printQR(c.out, s.QrPayload); err != nil {
			return err
		}
		what := "a bidder's DECRYPT code"
		if s.Hall {
			what = "the hall's DECRYPT code (every bidder scans it)"
		}
		fmt.Fprintf(c.out, "%s\n%s for opening %s, session %s, valid until %s; bidders answer with: hufu scan '%s'\n", s.QrPayload, what,
			s.OpeningId, s.Id, openingTime(s.ExpiresAt), s.QrPayload)
		if !*wait {
			return nil
		}
		done, err := c.followSession(ctx, scans, s.Id)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "certificate %s consented: hufu opening release %s\n", done.CertificateSerial, s.OpeningId)
		return nil
	}})
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string     { return strings.Join(*f, ",") }
func (f *stringsFlag) Set(v string) error { *f = append(*f, v); return nil }

func (c *cli) openingReleaseCommand() *urfave.Command {
	u, d := openingVerb("release")
	fs := newFlags()
	outDir := fs.String("out", "", "the directory for the keys, made 0700 if new (default: opening-ID)")
	var only stringsFlag
	fs.Var(&only, "envelope", "release only this envelope, which must be consented (repeat for several)")
	again := fs.Bool("again", false, "also release envelopes released before (after a lost answer; recorded as a repeat)")
	privFile := fs.String("result-key-private", "", "PEM of the SM2 private key of the opening's result key, to decrypt the released keys")
	return c.command(verb{name: "release", usage: u, desc: d, args: "ID", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		var err error
		id := pos[0]
		var priv *sm2.PrivateKey
		if *privFile != "" {
			if priv, err = readSM2PrivateKey(*privFile); err != nil {
				return err
			}
		}
		sys, err := c.openingSystem(conn)
		if err != nil {
			return err
		}
		got, err := sys.GetOpening(ctx, &hufuv1.GetOpeningRequest{OpeningId: id})
		if err != nil {
			return err
		}
		if priv != nil {
			p, err := cosign.PointFromPublicKey(&priv.PublicKey)
			switch {
			case err != nil:
				return fmt.Errorf("%s: %w", *privFile, err)
			case len(got.Opening.ResultPublicKey) == 0:
				return fmt.Errorf("opening %s has no result key: its keys come in clear; run without -result-key-private", id)
			case !bytes.Equal(p[:], got.Opening.ResultPublicKey):
				return fmt.Errorf("%s is not the private key of opening %s's result key", *privFile, id)
			}
		}
		dir := *outDir
		if dir == "" {
			dir = "opening-" + id
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}

		var total, failed int
		fail := func(envelope, why string) {
			failed++
			fmt.Fprintf(c.out, "%-24s FAILED  %s\n", envelope, why)
		}
		streamErr := client.ReleaseOpening(ctx, conn, &hufuv1.ReleaseRequest{OpeningId: id, EnvelopeIds: only, IncludeReleased: *again},
			func(r *hufuv1.ReleasedEnvelope) error {
				total++
				if !envelopeIDRE.MatchString(r.EnvelopeId) {
					fail(fmt.Sprintf("%q", r.EnvelopeId), "the appliance sent an invalid envelope id; nothing written")
					return nil
				}
				if r.Error != "" {
					fail(r.EnvelopeId, r.Error)
					return nil
				}
				key, name := r.Key, r.EnvelopeId+".key"
				switch {
				case len(key) > 0:
				case len(r.EncryptedKey) == 0:
					fail(r.EnvelopeId, "the appliance sent no key")
					return nil
				case priv == nil:
					key, name = r.EncryptedKey, r.EnvelopeId+".key.sm2"
				default:
					plain, err := sm2.Decrypt(priv, r.EncryptedKey)
					if err != nil {
						// Keep what was released: it cannot be released again without -again.
						path := filepath.Join(dir, r.EnvelopeId+".key.sm2")
						if werr := writeSecretFile(path, r.EncryptedKey); werr != nil {
							return fmt.Errorf("envelope %s was released but not written (%w): release it again with -again -envelope %s", r.EnvelopeId, werr, r.EnvelopeId)
						}
						fail(r.EnvelopeId, fmt.Sprintf("the result key does not decrypt it (%v); kept encrypted in %s", err, path))
						return nil
					}
					key = plain
				}
				path := filepath.Join(dir, name)
				if err := writeSecretFile(path, key); err != nil {
					return fmt.Errorf("envelope %s was released but not written (%w): release it again with -again -envelope %s", r.EnvelopeId, err, r.EnvelopeId)
				}
				fmt.Fprintf(c.out, "%-24s ok      %s\n", r.EnvelopeId, path)
				return nil
			})
		switch {
		case streamErr != nil && total == 0:
			return streamErr
		case streamErr != nil:
			fmt.Fprintf(c.out, "released %d envelope(s) to %s, %d failed, before the release stopped\n", total-failed, dir, failed)
			return streamErr
		case total == 0:
			fmt.Fprintf(c.out, "nothing released: no consented envelope of opening %s is waiting (hufu opening envelopes %s; -again releases released ones again)\n", id, id)
			return nil
		}
		fmt.Fprintf(c.out, "released %d of %d envelope(s) to %s", total-failed, total, dir)
		if failed > 0 {
			fmt.Fprintf(c.out, "; %d failed\n", failed)
			return fmt.Errorf("%d of %d envelope(s) of opening %s failed to release (see above)", failed, total, id)
		}
		fmt.Fprintln(c.out)
		return nil
	}})
}

// readSM2PrivateKey reads an SM2 private key from PEM: PKCS #8 ("PRIVATE KEY") or SEC 1
// ("EC PRIVATE KEY", "SM2 PRIVATE KEY").
func readSM2PrivateKey(path string) (*sm2.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: not PEM", path)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := smx509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if sk, ok := k.(*sm2.PrivateKey); ok {
			return sk, nil
		}
		return nil, fmt.Errorf("%s: not an SM2 private key", path)
	case "EC PRIVATE KEY", "SM2 PRIVATE KEY":
		sk, err := smx509.ParseSM2PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return sk, nil
	}
	return nil, fmt.Errorf("%s: a PEM %q, not an SM2 private key", path, block.Type)
}

// writeSecretFile writes data to path, readable by the owner only, replacing any file there
// at once (never a half-written key).
func writeSecretFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".hufu-*") // 0600
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func (c *cli) openingReportCommand() *urfave.Command {
	u, d := openingVerb("report")
	fs := newFlags()
	out := fs.String("o", "", "the file to write the report to")
	keyOut := fs.String("key-out", "", "also write the appliance's audit public key (PEM) here; an auditor obtains it independently (GET /audit/public-key)")
	return c.command(verb{name: "report", usage: u, desc: d, args: "ID", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *out == "" {
			return fmt.Errorf("-o FILE is required; %w", openingArgsError("report"))
		}
		if _, err := c.openingSystem(conn); err != nil {
			return err
		}
		var buf bytes.Buffer
		if _, err := client.DownloadReport(ctx, conn, pos[0], &buf); err != nil {
			return err
		}
		if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
			return err
		}
		h := sha256.Sum256(buf.Bytes())
		fmt.Fprintf(c.out, "wrote the report of opening %s to %s: %d bytes, SHA-256 %x\n", pos[0], *out, buf.Len(), h)
		if *keyOut != "" {
			resp, err := hufuv1.NewScanServiceClient(conn.ClientConn()).GetScanKey(ctx, &hufuv1.GetScanKeyRequest{})
			if err != nil {
				return err
			}
			pub, err := client.ParseScanKey(resp.PublicKeyPem)
			if err != nil {
				return err
			}
			if err := os.WriteFile(*keyOut, []byte(resp.PublicKeyPem), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "wrote the appliance's audit public key (SHA-256 %s…) to %s — a convenience: an auditor obtains the key "+
				"independently, from the admin surface (GET /audit/public-key), not from the appliance whose report is checked\n", keyFingerprint(pub), *keyOut)
		}
		fmt.Fprintf(c.out, "verify it offline: hufu opening verify %s -key AUDIT_PUBLIC_KEY.pem\n", *out)
		return nil
	}})
}

func (c *cli) openingVerifyCommand() *urfave.Command {
	u, d := openingVerb("verify")
	fs := newFlags()
	keyPath := fs.String("key", "", "the appliance's audit public key (PEM), from GET /audit/public-key on its admin listener")
	logPath := fs.String("audit-log", "", "an audit export (GET /audit/export) to tie the report into")
	return c.command(verb{name: "verify", usage: u, desc: d, args: "FILE", nargs: oneArg, offline: true, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if len(pos) != 1 || *keyPath == "" {
			return openingArgsError("verify")
		}
		pub, err := readAuditKey(*keyPath)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		rep, err := bidopening.Verify(b, pub)
		if err != nil {
			return fmt.Errorf("%s does NOT verify: %w", pos[0], err)
		}
		o := rep.Opening
		h := sha256.Sum256(b)
		fmt.Fprintf(c.out, "opening report verifies: signed by the audit key SHA-256 %s…; file SHA-256 %x\n", keyFingerprint(pub), h)
		fmt.Fprintf(c.out, "opening    %s of system %s\n", o.ID, o.System)
		fmt.Fprintf(c.out, "project    %s  %s (platform %s)\n", o.ProjectCode, o.ProjectName, o.Platform)
		fmt.Fprintf(c.out, "window     %s – %s\n", reportTime(o.WindowStart), reportTime(o.WindowEnd))
		fmt.Fprintf(c.out, "sealed     %s  closed %s\n", reportTime(o.SealedAt), reportTime(o.ClosedAt))
		fmt.Fprintf(c.out, "envelopes  %d, manifest SHA-256 %s\n", len(rep.Envelopes), hex.EncodeToString(o.ManifestSHA256[:]))
		for _, e := range rep.Envelopes {
			fmt.Fprintf(c.out, "  %s  certificate %s  registered %s\n", e.ID, e.Serial, reportTime(e.RegisteredAt))
		}
		fmt.Fprintf(c.out, "consents   %d\n", len(rep.Consents))
		for _, k := range rep.Consents {
			var ids []string
			if st, err := bidopening.ParseStatement(k.Statement); err == nil { // Verify parsed it
				for _, e := range st.Envelopes {
					ids = append(ids, e.ID)
				}
			}
			by := ""
			if k.Delegated {
				by = "  delegated (an enterprise member's device)"
			}
			fmt.Fprintf(c.out, "  certificate %s  at %s  session %s  envelopes %s%s\n", k.Serial, reportTime(k.AcceptedAt), k.Session, strings.Join(ids, ", "), by)
		}
		ok, bulk, phone := 0, 0, 0
		var bad []bidopening.Release
		for _, r := range rep.Releases {
			if r.Outcome == bidopening.OutcomeOK {
				ok++
			} else {
				bad = append(bad, r)
			}
			if r.Via == bidopening.ViaPhone {
				phone++
			} else {
				bulk++
			}
		}
		fmt.Fprintf(c.out, "releases   %d ok, %d failed (%d by the system's release, %d on the bidder's phone)\n", ok, len(bad), bulk, phone)
		for _, r := range bad {
			fmt.Fprintf(c.out, "  failed: %s at %s via %s: %s\n", r.Envelope, reportTime(r.At), r.Via, r.Outcome)
		}
		fmt.Fprintf(c.out, "attempts   %d refused (too early, or not the requester's envelope)\n", len(rep.Attempts))
		for _, a := range rep.Attempts {
			fmt.Fprintf(c.out, "  %s  via %s  envelope %s  %s\n", reportTime(a.At), a.Via, orNone(a.Envelope), a.Reason)
		}
		fmt.Fprintf(c.out, "audit      chain at record %d, head %s\n", rep.Audit.Seq, hex.EncodeToString(rep.Audit.Head[:]))
		if *logPath == "" {
			return nil
		}
		at, err := tieToAuditLog(*logPath, pub, rep, h)
		if err != nil {
			return fmt.Errorf("%s does NOT tie into the audit log %s: %w", pos[0], *logPath, err)
		}
		fmt.Fprintf(c.out, "audit log  verifies, signed through the report's position; record %d has its head; record %d (opening.report) names this file\n", rep.Audit.Seq, at)
		return nil
	}})
}

// tieToAuditLog verifies an audit export under the audit key and finds in it the report's
// position (the record whose chain hash is the report's head) and the appliance's
// opening.report record naming the report's SHA-256. It returns that record's sequence.
func tieToAuditLog(path string, pub *ecdsa.PublicKey, rep *bidopening.Report, sum [32]byte) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	res, err := store.VerifyExport(f, pub)
	if err != nil {
		return 0, fmt.Errorf("the log itself does not verify: %w", err)
	}
	if res.VerifiedThrough < rep.Audit.Seq {
		return 0, fmt.Errorf("the log is signed only through record %d, before the report's position %d (export it again later)", res.VerifiedThrough, rep.Audit.Seq)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	var headSeen bool
	var named uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Type    string            `json:"type"`
			Seq     uint64            `json:"seq"`
			Action  string            `json:"action"`
			Subject string            `json:"subject"`
			Details map[string]string `json:"details"`
			Hash    string            `json:"hash"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Type != "record" {
			continue
		}
		if line.Seq == rep.Audit.Seq {
			if line.Hash != hex.EncodeToString(rep.Audit.Head[:]) {
				return 0, fmt.Errorf("record %d has chain hash %s, the report says %x", line.Seq, line.Hash, rep.Audit.Head)
			}
			headSeen = true
		}
		if line.Action == "opening.report" && line.Subject == "b/opening/"+rep.Opening.ID && line.Seq <= res.VerifiedThrough {
			if line.Details["report_sha256"] != hex.EncodeToString(sum[:]) {
				return 0, fmt.Errorf("record %d (opening.report) names report SHA-256 %s, not this file's", line.Seq, line.Details["report_sha256"])
			}
			named = line.Seq
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !headSeen {
		return 0, fmt.Errorf("the log has no record %d (a range export that does not reach it?)", rep.Audit.Seq)
	}
	if named == 0 {
		return 0, errors.New("no signed opening.report record of this opening in the log (export it again later)")
	}
	return named, nil
}

// openingTime shows an appliance time in the local zone, with the date: an opening's times
// matter to the day.
func openingTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "(not set)"
	}
	return reportTime(ts.AsTime())
}

func reportTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }
