package main

// hufu rp: a business system (业务系统, seed manual §2) simulated on the command line. It
// creates a scan session, shows its QR code, follows the session until the person answers
// with a phone (hufu scan, in another terminal) and checks and prints the result. The calls
// need a client certificate (-tls-cert, -tls-key) of a system client allowed hufu.v1.ScanService;
// the development CLI certificate DIR/tls/cli.pem is allowed it by default.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	urfave "github.com/urfave/cli/v2"
)

const rpUsage = `rp bind -reference REF (-enterprise-name N -uscc U | -person-name N -id ID)
rp login | rp auth
rp sign -in FILE [FILE...] [-seal]
rp generate -in FILE
  common flags: [-platform ID (default demo)] [-reference REF] [-ttl D] [-roots PEM]
rp bindings [-reference REF] | rp unbind BINDING | rp resolve SERIAL`

var rpKinds = map[string]hufuv1.SessionKind{
	"bind":     hufuv1.SessionKind_SESSION_KIND_BIND,
	"login":    hufuv1.SessionKind_SESSION_KIND_LOGIN,
	"sign":     hufuv1.SessionKind_SESSION_KIND_SIGN,
	"generate": hufuv1.SessionKind_SESSION_KIND_GENERATE,
	"auth":     hufuv1.SessionKind_SESSION_KIND_AUTH,
}

// rpCommand is a business system (a system client allowed hufu.v1.ScanService): scan
// sessions and the system's bindings.
func (c *cli) rpCommand() *urfave.Command {
	return group("rp", "a business system (a system client allowed hufu.v1.ScanService): scan sessions and bindings", "seed manual §2, §3.1\n\n"+rpUsage,
		c.rpSessionCommand("bind", "bind a unit or person to the system: shows the QR code, follows the session"),
		c.rpSessionCommand("login", "a scan-to-log-in session"),
		c.rpSessionCommand("sign", "a scan-to-sign session for files (writes FILE.p7s)"),
		c.rpSessionCommand("generate", "a digital-envelope session (writes FILE.env and C1)"),
		c.rpSessionCommand("auth", "a scan-to-authorise session"),
		c.rpBindingsCommand(), c.rpUnbindCommand(), c.rpResolveCommand())
}

func (c *cli) rpSessionCommand(sub, usage string) *urfave.Command {
	kind := rpKinds[sub]
	fs := newFlags()
	platform := fs.String("platform", "demo", "the platform (交易平台) the session is for")
	reference := fs.String("reference", "", "the system's own reference of the unit or user (required for bind)")
	ttl := fs.Duration("ttl", 0, "how long the QR code lives, 30s to 30m (default: the appliance's, 3m)")
	entName := fs.String("enterprise-name", "", "bind: the enterprise's registered name")
	uscc := fs.String("uscc", "", "bind: the enterprise's unified social credit code")
	personName := fs.String("person-name", "", "bind: the person's legal name")
	idNumber := fs.String("id", "", "bind: the person's resident ID number")
	in := fs.String("in", "", "sign, generate: the file to sign")
	withSeal := fs.Bool("seal", false, "sign: ask the person to pick a seal for the signature's appearance")
	mode := fs.String("mode", "", "sign, generate: the sign mode (签章方式): recognition (全国CA互认APP) or scan (扫码认证); default: any certificate that can answer")
	rootsFile := fs.String("roots", "", "PEM root certificates to check results against (default: the root in the result's chain)")
	args, nargs := "", noArgs // -in FILE, or the files as arguments: sign and generate
	switch kind {
	case hufuv1.SessionKind_SESSION_KIND_SIGN:
		args, nargs = "[FILE...]", anyArgs
	case hufuv1.SessionKind_SESSION_KIND_GENERATE:
		args, nargs = "[FILE]", upTo(1)
	}
	return c.command(verb{name: sub, usage: usage, args: args, fs: fs, nargs: nargs, run: func(ctx context.Context, conn *client.Conn, files []string) error {
		if err := c.needCert("a business system", "hufu.v1.ScanService"); err != nil {
			return err
		}
		var err error
		if *in != "" {
			files = append([]string{*in}, files...)
		}
		req := &hufuv1.CreateSessionRequest{RequestId: "rp-" + randomHex(8), Kind: kind, PlatformId: *platform, Reference: *reference,
			WithSeal: *withSeal, TtlSeconds: uint32(ttl.Seconds())}
		switch *mode {
		case "":
		case "recognition":
			req.SignMode = hufuv1.SignMode_SIGN_MODE_MUTUAL_RECOGNITION
		case "scan":
			req.SignMode = hufuv1.SignMode_SIGN_MODE_SCAN
		default:
			return usagef("-mode %q: recognition (全国CA互认APP) or scan (扫码认证)", *mode)
		}
		switch kind {
		case hufuv1.SessionKind_SESSION_KIND_BIND:
			req.Subject = &hufuv1.BindSubject{EnterpriseName: *entName, Uscc: *uscc, PersonName: *personName, IdNumber: *idNumber}
		case hufuv1.SessionKind_SESSION_KIND_SIGN, hufuv1.SessionKind_SESSION_KIND_GENERATE:
			if len(files) == 0 {
				return usagef("rp %s: -in FILE is required", sub)
			}
			if kind == hufuv1.SessionKind_SESSION_KIND_GENERATE && len(files) != 1 {
				return usagef("rp generate: one bid file (-in FILE)")
			}
		}
		if len(files) > 0 && kind != hufuv1.SessionKind_SESSION_KIND_SIGN && kind != hufuv1.SessionKind_SESSION_KIND_GENERATE {
			return usagef("rp %s takes no files", sub)
		}
		contents := make([][]byte, len(files))
		for i, f := range files {
			if contents[i], err = os.ReadFile(f); err != nil {
				return err
			}
			h := sm3.Sum(contents[i])
			req.Documents = append(req.Documents, &hufuv1.Document{Name: filepath.Base(f), Sm3: h[:]})
		}
		var roots *smx509.CertPool
		if *rootsFile != "" {
			b, err := os.ReadFile(*rootsFile)
			if err != nil {
				return err
			}
			roots = smx509.NewCertPool()
			if !roots.AppendCertsFromPEM(b) {
				return fmt.Errorf("%s holds no certificate", *rootsFile)
			}
		}

		// The session may live longer than run's deadline for ordinary calls.
		life := 31 * time.Minute
		if *ttl > 0 {
			life = *ttl + time.Minute
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), life)
		defer cancel()
		rp := hufuv1.NewScanServiceClient(conn.ClientConn())
		created, err := rp.CreateSession(ctx, req)
		if err != nil {
			return err
		}
		s := created.Session
		if err := printQR(c.out, s.QrPayload); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s\nsession %s (%s on %s), waiting for a scan until %s; answer with: hufu scan '%s'\n", s.QrPayload, s.Id,
			strings.ToLower(kindWord(s.Kind)), s.PlatformId, s.ExpiresAt.AsTime().Local().Format(time.TimeOnly), s.QrPayload)
		for i, d := range req.Documents {
			fmt.Fprintf(c.out, "  document %d: %s  SM3 %x\n", i+1, d.Name, d.Sm3)
		}

		done, err := c.followSession(ctx, rp, s.Id)
		if err != nil {
			return err
		}
		r := done.Result
		if roots == nil && kind != hufuv1.SessionKind_SESSION_KIND_AUTH {
			if len(r.GetChain()) == 0 {
				return errors.New("the result carries no certificate chain; pass -roots")
			}
			root, err := smx509.ParseCertificate(r.Chain[len(r.Chain)-1])
			if err != nil {
				return fmt.Errorf("the result's root certificate: %w", err)
			}
			roots = smx509.NewCertPool()
			roots.AddCert(root)
			fmt.Fprintf(c.out, "checking against the result's root %q (pass -roots to pin it)\n", root.Subject.CommonName)
		}
		switch kind {
		case hufuv1.SessionKind_SESSION_KIND_BIND, hufuv1.SessionKind_SESSION_KIND_LOGIN:
			cert, err := client.VerifyLoginAssertion(r, roots, s.Id)
			if err != nil {
				return err
			}
			b := r.GetBinding()
			verb := "logged in"
			if kind == hufuv1.SessionKind_SESSION_KIND_BIND {
				verb = "bound"
			}
			fmt.Fprintf(c.out, "%s: reference %s ↔ certificate %s (%s)%s, binding %s; assertion verified\n", verb, orNone(b.GetReference()),
				done.CertificateSerial, cert.Subject.CommonName, usccNote(b.GetUscc()), b.GetId())
		case hufuv1.SessionKind_SESSION_KIND_SIGN, hufuv1.SessionKind_SESSION_KIND_GENERATE:
			if len(r.GetSignatures()) != len(files) {
				return fmt.Errorf("the result carries %d signatures for %d files", len(r.GetSignatures()), len(files))
			}
			var signer *smx509.Certificate
			for i, sd := range r.Signatures {
				if !bytes.Equal(sd.Sm3, req.Documents[i].Sm3) {
					return fmt.Errorf("%s: the result is for another digest", files[i])
				}
				if signer, err = client.VerifySignedDocument(sd, roots); err != nil {
					return err
				}
				if err := os.WriteFile(files[i]+".p7s", sd.Cms, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%s: signed by %s (certificate %s), CMS verified, written to %s.p7s\n", files[i], signer.Subject.CommonName,
					done.CertificateSerial, files[i])
			}
			if seal := r.GetSeal(); seal != nil {
				fmt.Fprintf(c.out, "seal %s (%s, %s), %d-byte image\n", seal.Name, seal.SealId, seal.Type, len(seal.Image))
			}
			if kind == hufuv1.SessionKind_SESSION_KIND_GENERATE {
				// The bid goes to the certificate the result names for envelopes: a pair's
				// encryption certificate (an appliance before pairs names none: the signer's).
				to, what := signer, "the signer's certificate"
				if der := r.GetEncryptionCertificate(); len(der) > 0 {
					if to, err = smx509.ParseCertificate(der); err != nil {
						return fmt.Errorf("the result's encryption certificate: %w", err)
					}
					if _, err := to.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: intermediatesOf(r), KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
						return fmt.Errorf("the result's encryption certificate does not chain to the CA: %w", err)
					}
					what = fmt.Sprintf("the encryption certificate %x", to.SerialNumber)
				}
				env, c1, err := client.EnvelopeBidFile(contents[0], to)
				if err != nil {
					return err
				}
				if err := os.WriteFile(files[0]+".env", env, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%s: enveloped to %s, written to %s.env\nC1 %x\n", files[0], what, files[0], c1)
			}
		case hufuv1.SessionKind_SESSION_KIND_AUTH:
			keyResp, err := rp.GetScanKey(ctx, &hufuv1.GetScanKeyRequest{})
			if err != nil {
				return err
			}
			scanKey, err := client.ParseScanKey(keyResp.PublicKeyPem)
			if err != nil {
				return err
			}
			released, err := client.VerifyRelease(r, scanKey, s.Id)
			if err != nil {
				return err
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, released, "", "  "); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "released (signature by the appliance's scan key verified):\n%s\n", pretty.String())
		}
		return nil
	}})
}

// followSession prints one line at each step of the session until it ends, and returns it
// when completed; declined, expired and failed sessions are errors.
func (c *cli) followSession(ctx context.Context, rp hufuv1.ScanServiceClient, id string) (*hufuv1.ScanSession, error) {
	stream, err := rp.WatchSession(ctx, &hufuv1.WatchSessionRequest{SessionId: id})
	if err != nil {
		return nil, err
	}
	state, serial := hufuv1.SessionState_SESSION_STATE_CREATED, ""
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil, errors.New("the appliance stopped following the session before it ended")
		}
		if err != nil {
			return nil, err
		}
		s := m.Session
		if s.State == hufuv1.SessionState_SESSION_STATE_SCANNED && state != s.State {
			fmt.Fprintln(c.out, "scanned")
		}
		if s.CertificateSerial != "" && s.CertificateSerial != serial {
			fmt.Fprintf(c.out, "certificate %s chosen\n", s.CertificateSerial)
		}
		state, serial = s.State, s.CertificateSerial
		switch s.State {
		case hufuv1.SessionState_SESSION_STATE_COMPLETED:
			fmt.Fprintln(c.out, "completed")
			return s, nil
		case hufuv1.SessionState_SESSION_STATE_DECLINED:
			return nil, fmt.Errorf("declined by the person: %s", orNone(s.Reason))
		case hufuv1.SessionState_SESSION_STATE_EXPIRED:
			return nil, errors.New("expired: nobody answered in time; create a new session")
		case hufuv1.SessionState_SESSION_STATE_FAILED:
			return nil, fmt.Errorf("failed: %s", orNone(s.Reason))
		}
	}
}

func kindWord(k hufuv1.SessionKind) string { return strings.TrimPrefix(k.String(), "SESSION_KIND_") }

func usccNote(uscc string) string {
	if uscc == "" {
		return ""
	}
	return " of enterprise " + uscc
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *cli) rpScan(conn *client.Conn) (hufuv1.ScanServiceClient, error) {
	if err := c.needCert("a business system", "hufu.v1.ScanService"); err != nil {
		return nil, err
	}
	return hufuv1.NewScanServiceClient(conn.ClientConn()), nil
}

func (c *cli) printBinding(b *hufuv1.Binding) {
	fmt.Fprintf(c.out, "%s  reference %s  certificate %s  %s  %s\n", b.Id, b.Reference, b.CertificateSerial, orNone(b.Uscc),
		b.CreatedAt.AsTime().Local().Format(time.DateTime))
}

// rpBindingsCommand lists the system's bindings (扫码绑定).
func (c *cli) rpBindingsCommand() *urfave.Command {
	fs := newFlags()
	reference := fs.String("reference", "", "only this reference's bindings")
	o := outputFlag(fs)
	return c.command(verb{name: "bindings", usage: "the system's bindings (扫码绑定)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			scan, err := c.rpScan(conn)
			if err != nil {
				return err
			}
			resp, err := scan.ListBindings(ctx, &hufuv1.ListBindingsRequest{Reference: *reference})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				for _, b := range resp.Bindings {
					c.printBinding(b)
				}
				return nil
			})
		}})
}

func (c *cli) rpUnbindCommand() *urfave.Command {
	return c.command(verb{name: "unbind", usage: "remove a binding", args: "BINDING", nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, args []string) error {
			scan, err := c.rpScan(conn)
			if err != nil {
				return err
			}
			_, err = scan.RemoveBinding(ctx, &hufuv1.RemoveBindingRequest{BindingId: args[0]})
			return err
		}})
}

func (c *cli) rpResolveCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "resolve", usage: "the binding of a certificate", args: "SERIAL", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, args []string) error {
			scan, err := c.rpScan(conn)
			if err != nil {
				return err
			}
			resp, err := scan.ResolveCertificate(ctx, &hufuv1.ResolveCertificateRequest{CertificateSerial: args[0]})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error { c.printBinding(resp.Binding); return nil })
		}})
}

// intermediatesOf pools a session result's chain but its last certificate (the root).
func intermediatesOf(r *hufuv1.SessionResult) *smx509.CertPool {
	pool := smx509.NewCertPool()
	for i, der := range r.GetChain() {
		if i == len(r.GetChain())-1 {
			break
		}
		if c, err := smx509.ParseCertificate(der); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}
