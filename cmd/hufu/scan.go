package main

// hufu scan: the phone's side of a business system's scan session (扫码, seed manual §2)
// and of a bid-opening system's DECRYPT code (扫码解密, §3.1: the bidder consents to the
// release of their envelopes), and hufu open-bid, the bidder opening an enveloped bid file.
//
// The appliance's scan key, which signs QR payloads, is pinned on first use in
// HOME/scan-keys.json (0600), one PEM per appliance address:
//
//	{"127.0.0.1:7443": "-----BEGIN PUBLIC KEY-----\n…"}
//
// A code that does not verify under the pinned key is refused; if the appliance now shows
// another key, the message says so, and the pin is removed by hand after checking why.

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	urfave "github.com/urfave/cli/v2"
)

func (c *cli) scanKeysPath() string { return filepath.Join(c.home, "scan-keys.json") }

// pinnedScanKey returns the scan key pinned for the daemon address, pinning the appliance's
// current one on first use.
func (c *cli) pinnedScanKey(ctx context.Context, phone hufuv1.PhoneScanServiceClient) (*ecdsa.PublicKey, error) {
	pins := map[string]string{}
	b, err := os.ReadFile(c.scanKeysPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &pins); err != nil {
			return nil, fmt.Errorf("%s: %w", c.scanKeysPath(), err)
		}
	}
	if p, ok := pins[c.addr]; ok {
		return client.ParseScanKey(p)
	}
	resp, err := phone.GetQrKey(ctx, &hufuv1.GetQrKeyRequest{})
	if err != nil {
		return nil, err
	}
	key, err := client.ParseScanKey(resp.PublicKeyPem)
	if err != nil {
		return nil, err
	}
	pins[c.addr] = resp.PublicKeyPem
	b, _ = json.MarshalIndent(pins, "", "  ")
	if err := os.MkdirAll(c.home, 0o700); err != nil {
		return nil, err
	}
	tmp := c.scanKeysPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, c.scanKeysPath()); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.out, "pinned the scan key of %s (SHA-256 %s) on first use\n", c.addr, keyFingerprint(key))
	return key, nil
}

func keyFingerprint(pub *ecdsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h := sha256.Sum256(der)
	return fmt.Sprintf("%x", h[:8])
}

func (c *cli) scanCommand() *urfave.Command {
	fs := newFlags()
	serial := fs.String("cert", "", "the certificate that answers (required when several can)")
	sealID := fs.String("seal", "", "the seal for the signature's appearance, when the system asks for one")
	decline := fs.String("decline", "", "say no, with this reason")
	pinFlag := fs.String("pin", "", "certificate PIN (default: HUFU_PIN, else asked)")
	return c.command(verb{name: "scan", usage: "the phone: check a scanned code, show what is asked and answer it", args: "PAYLOAD", desc: "scan PAYLOAD [-cert SERIAL] [-seal SEAL] [-decline REASON] [-pin P]: checks the code under the scan key pinned on first use. scan bindings | scan unbind SYSTEM BINDING: your certificates' bindings to business systems.", nargs: oneArg, sub: []*urfave.Command{c.myBindingsCommand(), c.myUnbindCommand()}, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		payload := strings.TrimSpace(pos[0])
		phone := hufuv1.NewPhoneScanServiceClient(conn.ClientConn())
		pinned, err := c.pinnedScanKey(ctx, phone)
		if err != nil {
			return err
		}
		shown, err := client.ScanSession(ctx, conn, payload, pinned)
		if errors.Is(err, client.ErrQRCode) {
			if cur, kerr := phone.GetQrKey(ctx, &hufuv1.GetQrKeyRequest{}); kerr == nil {
				if now, perr := client.ParseScanKey(cur.PublicKeyPem); perr == nil && !now.Equal(pinned) {
					return fmt.Errorf("refused: the appliance at %s now shows another scan key (SHA-256 %s) than the one pinned (SHA-256 %s); "+
						"if the appliance's key was really replaced, remove its entry from %s", c.addr, keyFingerprint(now), keyFingerprint(pinned), c.scanKeysPath())
				}
			}
			return errors.New("refused: not a scan code of this appliance, or altered (forged or swapped QR code?)")
		}
		if err != nil {
			return err
		}
		c.showScan(shown)

		if *decline != "" {
			if err := client.DeclineSession(ctx, conn, shown.SessionId, *decline); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "declined")
			return nil
		}
		if shown.Kind == hufuv1.SessionKind_SESSION_KIND_AUTH {
			if err := client.ConsentSession(ctx, conn, shown.SessionId); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "consented: the data above was released to the system")
			return nil
		}
		cand, err := pickCandidate(shown.Candidates, *serial)
		if err != nil {
			return err
		}
		if shown.WithSeal && *sealID == "" {
			return errors.New("the system asks for a seal: run again with -seal SEAL (hufu seal list), or -decline REASON")
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		if _, err := ks.Stat(cand.KeyId); err != nil {
			return fmt.Errorf("certificate %s: its key %s is not in this device's keystore", cand.Serial, cand.KeyId)
		}
		pin, err := c.pin(*pinFlag, "certificate PIN: ")
		if err != nil {
			return err
		}
		err = client.AnswerSession(ctx, conn, ks, shown.SessionId, cand.Serial, *sealID, pin, shown)
		if errors.Is(err, client.ErrNotShown) {
			// Tell the system at once rather than leave it waiting for the expiry.
			_ = client.DeclineSession(ctx, conn, shown.SessionId, "the phone refused: what it was asked to sign is not what it showed")
			return fmt.Errorf("refused and declined: %w", err)
		}
		if recognitionRequired(err) {
			return fmt.Errorf("not answered: the mutual-recognition service (互认) is not open; see hufu wallet plans, then hufu wallet buy-pass or hufu wallet top-up, and scan a new code: %w", err)
		}
		if err != nil {
			return err
		}
		if shown.Kind == hufuv1.SessionKind_SESSION_KIND_DECRYPT {
			fmt.Fprintf(c.out, "consented with certificate %s: the bid-opening system may now release %s\n", cand.Serial, envelopeIDs(cand.Envelopes))
			return nil
		}
		fmt.Fprintf(c.out, "answered with certificate %s: %s completed\n", cand.Serial, strings.ToLower(kindWord(shown.Kind)))
		return nil
	}})
}

// envelopeIDs lists envelopes by id: "envelope a" or "envelopes a, b".
func envelopeIDs(envs []*hufuv1.ConsentEnvelope) string {
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = e.Id
	}
	if len(ids) == 1 {
		return "envelope " + ids[0]
	}
	return "envelopes " + strings.Join(ids, ", ")
}

var scanAsks = map[hufuv1.SessionKind]string{
	hufuv1.SessionKind_SESSION_KIND_BIND:     "bind your certificate to its account (扫码绑定)",
	hufuv1.SessionKind_SESSION_KIND_LOGIN:    "sign in with your certificate (扫码登录)",
	hufuv1.SessionKind_SESSION_KIND_SIGN:     "sign these documents (扫码签章)",
	hufuv1.SessionKind_SESSION_KIND_GENERATE: "sign the bid file, which it then envelopes to your certificate (生成投标文件)",
	hufuv1.SessionKind_SESSION_KIND_AUTH:     "see your verified identity and enterprises (扫码认证)",
	hufuv1.SessionKind_SESSION_KIND_DECRYPT:  "release your bid envelopes in this opening to the bid-opening system (扫码解密)",
}

// showScan says in words what the system asks.
func (c *cli) showScan(s *hufuv1.ScanResponse) {
	fmt.Fprintf(c.out, "%s on platform %s asks you to %s\n", s.SystemName, orNone(s.PlatformName), scanAsks[s.Kind])
	if sub := s.GetSubject(); s.Kind == hufuv1.SessionKind_SESSION_KIND_BIND {
		if sub.GetUscc() != "" {
			fmt.Fprintf(c.out, "  as enterprise %s (USCC %s)\n", sub.EnterpriseName, sub.Uscc)
		} else {
			fmt.Fprintf(c.out, "  as %s (the ID number it holds is checked against yours)\n", sub.GetPersonName())
		}
	}
	for i, d := range s.Documents {
		fmt.Fprintf(c.out, "  %d. %s  SM3 %x…\n", i+1, d.Name, d.Sm3[:min(8, len(d.Sm3))])
	}
	if s.WithSeal {
		fmt.Fprintln(c.out, "  with a seal for the signature's appearance")
	}
	switch s.SignMode {
	case hufuv1.SignMode_SIGN_MODE_MUTUAL_RECOGNITION:
		fmt.Fprintln(c.out, "  sign mode 全国CA互认APP: certificates of the national mutual-recognition system")
	case hufuv1.SignMode_SIGN_MODE_SCAN:
		fmt.Fprintln(c.out, "  sign mode 扫码认证: certificates of this platform")
	}
	if len(s.ReleasePreview) > 0 {
		fmt.Fprintf(c.out, "  it would receive: %s\n", s.ReleasePreview)
	}
	if o := s.GetOpening(); s.Kind == hufuv1.SessionKind_SESSION_KIND_DECRYPT {
		fmt.Fprintf(c.out, "  opening of project %s %s (opening %s)\n", o.GetProjectCode(), o.GetProjectName(), o.GetId())
		fmt.Fprintf(c.out, "  window %s – %s\n", openingTime(o.GetWindowStart()), openingTime(o.GetWindowEnd()))
	}
	if s.ExpiresAt != nil {
		fmt.Fprintf(c.out, "  answer before %s\n", s.ExpiresAt.AsTime().Local().Format(time.TimeOnly))
	}
	for _, cand := range s.Candidates {
		note := "usable"
		if cand.Refusal != "" {
			note = "not usable: " + cand.Refusal
		} else if cand.MutualRecognition {
			note = "usable through mutual recognition (全国CA互认): needs a day pass or one per-use debit for this platform (hufu wallet)"
		}
		fmt.Fprintf(c.out, "  certificate %s  %s%s  %s\n", cand.Serial, cand.Subject, usccNote(cand.Uscc), note)
		for _, e := range cand.Envelopes {
			fmt.Fprintf(c.out, "    envelope %s\n", e.Id)
		}
	}
	if s.Kind == hufuv1.SessionKind_SESSION_KIND_DECRYPT && len(s.Candidates) == 0 {
		fmt.Fprintln(c.out, "  no certificate of yours on this device has an envelope in this opening")
	}
}

// pickCandidate picks the certificate that answers: the one named, or the only usable one.
func pickCandidate(cands []*hufuv1.Candidate, serial string) (*hufuv1.Candidate, error) {
	var usable []*hufuv1.Candidate
	for _, c := range cands {
		if serial != "" && c.Serial == serial {
			if c.Refusal != "" {
				return nil, fmt.Errorf("certificate %s cannot answer: %s", serial, c.Refusal)
			}
			return c, nil
		}
		if c.Refusal == "" {
			usable = append(usable, c)
		}
	}
	switch {
	case serial != "":
		return nil, fmt.Errorf("certificate %s is not one of yours on this device that can answer", serial)
	case len(usable) == 1:
		return usable[0], nil
	case len(usable) == 0:
		return nil, errors.New("no certificate on this device can answer this session (see above); decline with -decline REASON")
	}
	return nil, fmt.Errorf("%d certificates can answer: choose one with -cert SERIAL", len(usable))
}

func (c *cli) openBidCommand() *urfave.Command {
	fs := newFlags()
	keyID := fs.String("key", "", "key id of the certificate the file was enveloped to")
	in := fs.String("in", "", "the enveloped bid file (FILE.env)")
	out := fs.String("out", "", "where to write the bid file (default: IN without .env)")
	pinFlag := fs.String("pin", "", "certificate PIN (default: HUFU_PIN, else asked)")
	return c.command(verb{name: "open-bid", usage: "open an enveloped bid file (two-party decryption)", desc: "open-bid -key K -in FILE.env [-out FILE]", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *keyID == "" || *in == "" {
			return usagef("open-bid -key K -in FILE.env [-out FILE]")
		}
		dest := *out
		if dest == "" {
			if dest = strings.TrimSuffix(*in, ".env"); dest == *in {
				dest = *in + ".dec"
			}
		}
		env, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		if _, err := ks.Stat(*keyID); err != nil {
			return err
		}
		pin, err := c.pin(*pinFlag, "certificate PIN: ")
		if err != nil {
			return err
		}
		content, err := client.OpenBidFile(ctx, conn, ks, *keyID, pin, env)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dest, content, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s: opened with the two-party decryption, written to %s\n", *in, dest)
		return nil
	}})
}

// myBindings lists the bindings of this person's certificates to business systems
// (scan bindings), or removes one (scan unbind SYSTEM BINDING).
func (c *cli) myUnbindCommand() *urfave.Command {
	return c.command(verb{name: "unbind", usage: "remove a binding of yours (as scan bindings lists them)", args: "SYSTEM BINDING", nargs: twoArgs,
		run: func(ctx context.Context, conn *client.Conn, args []string) error {
			phone := hufuv1.NewPhoneScanServiceClient(conn.ClientConn())
			_, err := phone.RemoveMyBinding(ctx, &hufuv1.RemoveMyBindingRequest{System: args[0], BindingId: args[1]})
			return err
		}})
}

func (c *cli) myBindingsCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "bindings", usage: "your certificates' bindings to business systems", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			phone := hufuv1.NewPhoneScanServiceClient(conn.ClientConn())
			resp, err := phone.ListMyBindings(ctx, &hufuv1.ListMyBindingsRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				for _, b := range resp.Bindings {
					fmt.Fprintf(c.out, "%s  %s  binding %s  reference %s  certificate %s\n", b.System, b.PlatformId, b.Id, b.Reference, b.CertificateSerial)
				}
				if len(resp.Bindings) == 0 {
					fmt.Fprintln(c.out, "no certificate of yours is bound to a business system")
				}
				return nil
			})
		}})
}

// scanCommands: the phone's scan, open-bid, and a business system's rp.
func (c *cli) scanCommands() []*urfave.Command {
	return []*urfave.Command{c.scanCommand(), c.openBidCommand(), c.rpCommand()}
}
