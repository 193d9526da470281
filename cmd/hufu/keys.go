package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	urfave "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The split-key commands: the CLI plays the phone, keeping its shares in HOME/keys under the
// device key HOME/device.key (kept outside the keys directory so that copying or backing up
// the directory does not take the key to open it).

func (c *cli) keystore() (*keystore.Store, error) {
	return keystore.Open(filepath.Join(c.home, "keys"), filepath.Join(c.home, "device.key"))
}

var pinRE = regexp.MustCompile(`^[0-9]{6}$`)

// pin returns the certificate PIN: the flag, else HUFU_PIN, else asked for (without echo on
// a terminal).
func (c *cli) pin(given, question string) (string, error) {
	pin := given
	if pin == "" {
		pin = os.Getenv("HUFU_PIN")
	}
	if pin == "" {
		var err error
		if pin, err = c.secret(question); err != nil {
			return "", err
		}
	}
	if !pinRE.MatchString(pin) {
		return "", errors.New("the certificate PIN is 6 digits")
	}
	return pin, nil
}

// newPIN asks for a new PIN twice unless it was given.
func (c *cli) newPIN(given string) (string, error) {
	if given != "" {
		return c.pin(given, "")
	}
	pin, err := c.secret("new certificate PIN (6 digits): ")
	if err != nil {
		return "", err
	}
	if !pinRE.MatchString(pin) {
		return "", errors.New("the certificate PIN is 6 digits")
	}
	again, err := c.secret("repeat the new PIN: ")
	if err != nil {
		return "", err
	}
	if again != pin {
		return "", errors.New("the two PINs differ")
	}
	return pin, nil
}

// secret reads a line, with echo off when standard input is a terminal.
func (c *cli) secret(question string) (string, error) {
	if f, ok := c.stdin.(*os.File); ok {
		if restore, ok := noEcho(f); ok {
			defer restore()
		}
	}
	// The answer is not echoed (or comes from a pipe): end the prompt's line ourselves.
	defer fmt.Fprintln(c.errOut)
	fmt.Fprint(c.errOut, question)
	line, err := c.in.ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading %s: %w", strings.TrimSuffix(question, ": "), err)
	}
	return strings.TrimSpace(line), nil
}

// progress draws "label done/total" on one line of standard error.
func (c *cli) progress(label string) func(done, total int) {
	return func(done, total int) {
		fmt.Fprintf(c.errOut, "\r%s %d/%d", label, done, total)
		if done == total {
			fmt.Fprintln(c.errOut)
		}
	}
}

// keyCommands: split keys (this device holds one share, the appliance the other), and what
// is done with them.
func (c *cli) keyCommands() []*urfave.Command {
	return []*urfave.Command{
		group("key", "split keys: this device holds one share, the appliance the other", "",
			c.keyNewCommand(), c.keyListCommand(), c.keyShowCommand(), c.keyRefreshCommand()),
		c.signCommand(),
		c.verifyCommand(),
		c.encryptCommand(),
		c.decryptCommand(),
		group("pin", "change or reset a key's certificate PIN", "",
			c.pinCommand("change", "change the certificate PIN"),
			c.pinCommand("reset", "forgot the PIN: reset it by an SMS code, which also unlocks the key")),
		c.usageCommand(),
	}
}

func (c *cli) keyNewCommand() *urfave.Command {
	fs := newFlags()
	label := fs.String("label", "", "a name for the key")
	pinFlag := fs.String("pin", "", "the new certificate PIN, 6 digits (default: HUFU_PIN, else asked)")
	return c.command(verb{name: "new", usage: "create a split key (needs a verified identity)", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		given := *pinFlag
		if given == "" {
			given = os.Getenv("HUFU_PIN")
		}
		pin, err := c.newPIN(given)
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		e, err := client.CreateKey(ctx, conn, ks, pin, *label)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "created key %s (share version %d)\n", e.ID, e.Version)
		return writePEM(c.out, &e.Public)
	}})
}

func (c *cli) keyListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "the account's keys, and which are on this device", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error { return c.keyList(ctx, conn, o) }})
}

func (c *cli) keyList(ctx context.Context, conn *client.Conn, o *outputFormat) error {
	ks, err := c.keystore()
	if err != nil {
		return err
	}
	local, err := ks.List()
	if err != nil {
		return err
	}
	here := map[string]keystore.Info{}
	for _, l := range local {
		here[l.ID] = l
	}
	resp, err := conn.Keys.ListKeys(ctx, &hufuv1.ListKeysRequest{})
	if err != nil {
		return err
	}
	if o.json() {
		return c.emit(o, resp, nil)
	}
	fmt.Fprintf(c.out, "%-24s %-8s %-8s %-14s %s\n", "KEY", "STATUS", "VERSION", "ON THIS DEVICE", "LABEL")
	for _, k := range resp.Keys {
		onDevice := "no"
		if l, ok := here[k.Id]; ok {
			onDevice = fmt.Sprintf("yes (v%d)", l.Version)
			delete(here, k.Id)
		}
		fmt.Fprintf(c.out, "%-24s %-8s %-8d %-14s %s\n", k.Id, statusName(k.Status), k.ShareVersion, onDevice, k.Label)
	}
	for _, l := range local {
		if _, ok := here[l.ID]; ok {
			fmt.Fprintf(c.out, "%-24s %-8s %-8d %-14s %s\n", l.ID, "unknown", l.Version, "yes (not on this account)", l.Label)
		}
	}
	return nil
}

func (c *cli) keyShowCommand() *urfave.Command {
	fs := newFlags()
	pemOnly := fs.Bool("pem", false, "print only the public key (PEM), from the keystore; no daemon needed")
	o := outputFlag(fs)
	return c.command(verb{name: "show", usage: "status and public key of a key (-pem: the PEM only, offline)", args: "KEY", nargs: oneArg, offline: true, fs: fs, run: func(ctx context.Context, _ *client.Conn, pos []string) error {
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		info, localErr := ks.Stat(pos[0])
		if *pemOnly {
			if localErr != nil {
				return localErr
			}
			return writePEM(c.out, &info.Public)
		}
		conn, err := c.connect() // -pem needs no daemon; the rest does
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := conn.Keys.GetKey(ctx, &hufuv1.GetKeyRequest{KeyId: pos[0]})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		k := resp.Key
		fmt.Fprintf(c.out, "key       %s\nlabel     %s\nstatus    %s\nversion   %d", k.Id, orNone(k.Label), statusName(k.Status), k.ShareVersion)
		if k.PendingVersion != 0 {
			fmt.Fprintf(c.out, " (refresh to %d pending)", k.PendingVersion)
		}
		fmt.Fprintf(c.out, "\ndevice    %s\ncreated   %s\n", k.DeviceId, k.CreatedAt.AsTime().Local().Format(time.DateTime))
		if k.LockedUntil != nil {
			fmt.Fprintf(c.out, "locked    until %s (hufu pin reset)\n", k.LockedUntil.AsTime().Local().Format(time.DateTime))
		} else if k.PinFailures > 0 {
			fmt.Fprintf(c.out, "PIN       %d wrong attempts\n", k.PinFailures)
		}
		switch {
		case errors.Is(localErr, keystore.ErrNotFound):
			fmt.Fprintln(c.out, "share     not on this device")
		case localErr != nil:
			return localErr
		default:
			fmt.Fprintf(c.out, "share     on this device, version %d", info.Version)
			if info.PendingVersion != 0 {
				fmt.Fprintf(c.out, " (version %d pending)", info.PendingVersion)
			}
			fmt.Fprintln(c.out)
		}
		pub, err := cosign.ParsePoint(k.PublicKey)
		if err != nil {
			return fmt.Errorf("public key from the daemon: %w", err)
		}
		return writePEM(c.out, &pub)
	}})
}

func (c *cli) keyRefreshCommand() *urfave.Command {
	fs := newFlags()
	pinFlag := fs.String("pin", "", "certificate PIN (default: HUFU_PIN, else asked)")
	return c.command(verb{name: "refresh", usage: "new shares, same public key (resumes if interrupted)", args: "KEY", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		pin, err := c.pin(*pinFlag, "certificate PIN: ")
		if err != nil {
			return err
		}
		e, err := client.RefreshKey(ctx, conn, ks, pos[0], client.PINCredential(pin), func(step string) {
			fmt.Fprintln(c.errOut, "refresh:", step)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "key %s refreshed: share version %d, public key unchanged\n", e.ID, e.Version)
		return nil
	}})
}

// openKey opens a stored key with a ticket from the PIN.
func (c *cli) openKey(ctx context.Context, conn *client.Conn, keyID, pinFlag string) (*client.Key, error) {
	if keyID == "" {
		return nil, usagef("-key is required")
	}
	ks, err := c.keystore()
	if err != nil {
		return nil, err
	}
	if _, err := ks.Stat(keyID); err != nil {
		return nil, err
	}
	pin, err := c.pin(pinFlag, "certificate PIN: ")
	if err != nil {
		return nil, err
	}
	return client.OpenKey(ctx, conn, ks, keyID, pin)
}

func (c *cli) signCommand() *urfave.Command {
	fs := newFlags()
	keyID := fs.String("key", "", "key id")
	in := fs.String("in", "", "file to sign")
	out := fs.String("out", "", "signature file (default: IN.sig)")
	id := fs.String("id", "", "SM2 signer ID (default 1234567812345678)")
	pinFlag := fs.String("pin", "", "certificate PIN (default: HUFU_PIN, else asked)")
	return c.command(verb{name: "sign", usage: "SM2 signature, ASN.1 DER (default FILE.sig); several files: one batch", args: "[FILE...]", desc: "sign -key K -in FILE [-out FILE] [-id ID], or sign -key K FILE... (one batch)", nargs: anyArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, files []string) error {
		files, msgs, err := readInputs(*in, files, *out,
			"sign -key K -in FILE [-out FILE] [-id ID] (or several files: sign -key K FILE...)",
			"-out names one signature file; with several files each gets FILE.sig")
		if err != nil {
			return err
		}
		key, err := c.openKey(ctx, conn, *keyID, *pinFlag)
		if err != nil {
			return err
		}
		pub := key.PublicPoint()
		digests := make([][cosign.ScalarSize]byte, len(msgs))
		for i, m := range msgs {
			if digests[i], err = cosign.Digest(&pub, []byte(*id), m); err != nil {
				return err
			}
		}
		var (
			sigs []cosign.Signature
			errs []error
		)
		if len(files) == 1 { // one Sign call rather than a batch of one
			sig, err := key.SignDigest(ctx, rand.Reader, &digests[0])
			sigs, errs = []cosign.Signature{sig}, []error{err}
		} else {
			key.Progress = c.progress("signing")
			sigs, errs = key.SignDigests(ctx, digests)
		}
		failed := 0
		for i, f := range files {
			if errs[i] != nil {
				failed++
				fmt.Fprintf(c.out, "%s: %s\n", f, describe(errs[i]))
				continue
			}
			dest := f + ".sig"
			if *out != "" {
				dest = *out
			}
			if err := os.WriteFile(dest, sigs[i].ASN1(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "%s: signature written to %s\n", f, dest)
		}
		if failed > 0 {
			return batchFailed(fmt.Sprintf("%d of %d files not signed", failed, len(files)), errs)
		}
		return nil
	}})
}

func (c *cli) decryptCommand() *urfave.Command {
	fs := newFlags()
	keyID := fs.String("key", "", "key id")
	in := fs.String("in", "", "SM2 ciphertext (C1C3C2 or ASN.1, detected)")
	out := fs.String("out", "", "plaintext file (default: IN without .enc, else IN.dec)")
	pinFlag := fs.String("pin", "", "certificate PIN (default: HUFU_PIN, else asked)")
	return c.command(verb{name: "decrypt", usage: "two-party SM2 decryption; several files: one batch", args: "[FILE...]", desc: "decrypt -key K -in FILE [-out FILE], or decrypt -key K FILE... (one batch)", nargs: anyArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, files []string) error {
		files, cts, err := readInputs(*in, files, *out,
			"decrypt -key K -in FILE [-out FILE] (or several files: decrypt -key K FILE...)",
			"-out names one file; with several files each is written beside its ciphertext")
		if err != nil {
			return err
		}
		key, err := c.openKey(ctx, conn, *keyID, *pinFlag)
		if err != nil {
			return err
		}
		var (
			plain [][]byte
			errs  []error
		)
		if len(files) == 1 { // one Decrypt call rather than a batch of one
			p, err := key.DecryptContext(ctx, cts[0], nil)
			plain, errs = [][]byte{p}, []error{err}
		} else {
			key.Progress = c.progress("decrypting")
			plain, errs = key.DecryptMany(ctx, cts)
		}
		failed := 0
		for i, f := range files {
			if errs[i] != nil {
				failed++
				fmt.Fprintf(c.out, "%s: %s\n", f, describe(errs[i]))
				continue
			}
			dest := *out
			if dest == "" {
				if dest = strings.TrimSuffix(f, ".enc"); dest == f {
					dest = f + ".dec"
				}
			}
			if err := os.WriteFile(dest, plain[i], 0o600); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "%s: plaintext written to %s\n", f, dest)
		}
		if failed > 0 {
			return batchFailed(fmt.Sprintf("%d of %d files not decrypted", failed, len(files)), errs)
		}
		return nil
	}})
}

// publicKey reads the public key a verify or encrypt uses: -pub (PEM public key, PEM
// certificate, or hex of the 65-byte point) or -key (a key in the keystore).
func (c *cli) publicKey(pubFile, keyID string) (*ecdsa.PublicKey, error) {
	switch {
	case pubFile != "" && keyID != "":
		return nil, usagef("give -pub or -key, not both")
	case keyID != "":
		ks, err := c.keystore()
		if err != nil {
			return nil, err
		}
		info, err := ks.Stat(keyID)
		if err != nil {
			return nil, err
		}
		return info.Public.PublicKey(), nil
	case pubFile == "":
		return nil, usagef("-pub FILE or -key K is required")
	}
	raw, err := os.ReadFile(pubFile)
	if err != nil {
		return nil, err
	}
	return parsePublicKey(raw)
}

func parsePublicKey(raw []byte) (*ecdsa.PublicKey, error) {
	if block, _ := pem.Decode(raw); block != nil {
		var pub any
		switch block.Type {
		case "PUBLIC KEY":
			p, err := smx509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key: %w", err)
			}
			pub = p
		case "CERTIFICATE":
			cert, err := smx509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate: %w", err)
			}
			pub = cert.PublicKey
		default:
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY or CERTIFICATE", block.Type)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != sm2.P256() {
			return nil, errors.New("not an SM2 public key")
		}
		if _, err := cosign.PointFromPublicKey(ec); err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		return ec, nil
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, errors.New("public key: neither PEM nor hex")
	}
	p, err := cosign.ParsePoint(b)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return p.PublicKey(), nil
}

func writePEM(w interface{ Write([]byte) (int, error) }, p *cosign.Point) error {
	der, err := smx509.MarshalPKIXPublicKey(p.PublicKey())
	if err != nil {
		return err
	}
	return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// verify and encrypt need no daemon.

func (c *cli) verifyCommand() *urfave.Command {
	fs := newFlags()
	pubFile := fs.String("pub", "", "public key: PEM, certificate PEM, or hex")
	keyID := fs.String("key", "", "a key in the keystore (instead of -pub)")
	in := fs.String("in", "", "the signed file")
	sigFile := fs.String("sig", "", "the DER signature (default: IN.sig)")
	id := fs.String("id", "", "SM2 signer ID (default 1234567812345678)")
	return c.command(verb{name: "verify", usage: "standard SM2 verification (no daemon)", desc: "verify -pub FILE|-key K -in FILE [-sig FILE] [-id ID]", nargs: noArgs, offline: true, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *in == "" {
			return usagef("verify -pub FILE|-key K -in FILE [-sig FILE] [-id ID]")
		}
		if *sigFile == "" {
			*sigFile = *in + ".sig"
		}
		pub, err := c.publicKey(*pubFile, *keyID)
		if err != nil {
			return err
		}
		msg, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		sig, err := os.ReadFile(*sigFile)
		if err != nil {
			return err
		}
		uid := []byte(*id)
		if len(uid) == 0 {
			uid = []byte(cosign.DefaultSignerID)
		}
		if !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) {
			return fmt.Errorf("%s: the signature does not verify", *sigFile)
		}
		fmt.Fprintln(c.out, "signature OK")
		return nil
	}})
}

func (c *cli) encryptCommand() *urfave.Command {
	fs := newFlags()
	pubFile := fs.String("pub", "", "recipient's public key: PEM, certificate PEM, or hex")
	keyID := fs.String("key", "", "a key in the keystore (instead of -pub)")
	in := fs.String("in", "", "plaintext file")
	out := fs.String("out", "", "ciphertext file (default: IN.enc)")
	asn1 := fs.Bool("asn1", false, "write the GM/T 0009 ASN.1 form instead of C1C3C2")
	return c.command(verb{name: "encrypt", usage: "standard SM2 encryption, C1C3C2 (no daemon)", desc: "encrypt -pub FILE|-key K -in FILE [-out FILE] [-asn1]", nargs: noArgs, offline: true, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *in == "" {
			return usagef("encrypt -pub FILE|-key K -in FILE [-out FILE] [-asn1]")
		}
		if *out == "" {
			*out = *in + ".enc"
		}
		pub, err := c.publicKey(*pubFile, *keyID)
		if err != nil {
			return err
		}
		msg, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		if len(msg) == 0 {
			return errors.New("SM2 cannot encrypt an empty message")
		}
		opts := sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2)
		if *asn1 {
			opts = sm2.ASN1EncrypterOpts
		}
		ct, err := sm2.Encrypt(rand.Reader, pub, msg, opts)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, ct, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "ciphertext written to %s\n", *out)
		return nil
	}})
}

func (c *cli) pinCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	keyID := fs.String("key", "", "key id")
	next := fs.String("new-pin", "", "new PIN (default: asked twice)")
	var current, phone, code *string
	if sub == "change" {
		current = fs.String("pin", "", "current PIN (default: HUFU_PIN, else asked)")
	} else {
		phone = fs.String("phone", "", "the account's mobile number")
		code = fs.String("code", "", "SMS code (default: request one, then the development outbox, else asked)")
	}
	return c.command(verb{name: sub, usage: usage, fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *keyID == "" {
				return usagef("-key is required")
			}
			switch sub {
			case "change":
				cur, err := c.pin(*current, "current certificate PIN: ")
				if err != nil {
					return err
				}
				pin, err := c.newPIN(*next)
				if err != nil {
					return err
				}
				if _, err := conn.Keys.ChangePin(ctx, &hufuv1.ChangePinRequest{KeyId: *keyID, CurrentPin: cur, NewPin: pin}); err != nil {
					return err
				}
				fmt.Fprintln(c.out, "certificate PIN changed")
				return nil
			case "reset":
				if *phone == "" {
					return usagef("-phone (the account's number, for the SMS code) is required")
				}
				sms, err := c.smsCode(ctx, conn, *phone, hufuv1.SmsPurpose_SMS_PURPOSE_RESET_CERTIFICATE_PIN, *code)
				if err != nil {
					return err
				}
				pin, err := c.newPIN(*next)
				if err != nil {
					return err
				}
				if _, err := conn.Keys.ResetPin(ctx, &hufuv1.ResetPinRequest{KeyId: *keyID, Code: sms, NewPin: pin}); err != nil {
					return err
				}
				fmt.Fprintln(c.out, "certificate PIN reset; the key is unlocked")
				return nil
			}
			return nil
		}})
}

func (c *cli) usageCommand() *urfave.Command {
	fs := newFlags()
	keyID := fs.String("key", "", "key id")
	limit := fs.Int("n", 50, "how many records, newest first")
	o := outputFlag(fs)
	return c.command(verb{name: "usage", usage: "the key's usage records, newest first", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *keyID == "" {
			return usagef("-key is required")
		}
		all := &hufuv1.ListUsageResponse{}
		if !o.json() {
			fmt.Fprintf(c.out, "%-19s %-15s %-5s %-16s %-8s %s\n", "TIME", "OPERATION", "COUNT", "DIGEST", "CONTEXT", "OUTCOME")
		}
		token, shown := "", 0
		for shown < *limit {
			resp, err := conn.Keys.ListUsage(ctx, &hufuv1.ListUsageRequest{KeyId: *keyID, PageSize: uint32(min(*limit-shown, 1000)), PageToken: token})
			if err != nil {
				return err
			}
			all.Records = append(all.Records, resp.Records...)
			for _, r := range resp.Records {
				shown++
				if o.json() {
					continue
				}
				digest := r.Digest
				if len(digest) > 16 {
					digest = digest[:16]
				}
				fmt.Fprintf(c.out, "%-19s %-15s %-5d %-16s %-8s %s\n", r.Time.AsTime().Local().Format(time.DateTime), r.Operation, r.Count, orNone(digest), r.Context, r.Outcome)
			}
			if token = resp.NextPageToken; token == "" || len(resp.Records) == 0 {
				break
			}
		}
		return c.emit(o, all, func() error { return nil })
	}})
}

func statusName(s hufuv1.KeyStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "KEY_STATUS_"))
}

// readInputs gathers the files of sign and decrypt (-in first, then the arguments) and reads
// them; -out makes sense for one file only.
func readInputs(in string, args []string, out, usage, outWithMany string) ([]string, [][]byte, error) {
	files := args
	if in != "" {
		files = append([]string{in}, args...)
	}
	if len(files) == 0 {
		return nil, nil, usagef("%s", usage)
	}
	if len(files) > 1 && out != "" {
		return nil, nil, usagef("%s", outWithMany)
	}
	contents := make([][]byte, len(files))
	for i, f := range files {
		var err error
		if contents[i], err = os.ReadFile(f); err != nil {
			return nil, nil, err
		}
	}
	return files, contents, nil
}

// batchFailed is the error of a batch some of whose files failed, each already reported: when
// every failure has the same gRPC code, the batch carries it, so the exit code says why
// (exitCode) as it does for one call.
func batchFailed(msg string, errs []error) error {
	code := codes.OK
	for _, err := range errs {
		if err == nil {
			continue
		}
		c := status.Code(err)
		if code != codes.OK && c != code {
			return errors.New(msg)
		}
		code = c
	}
	if code == codes.OK || code == codes.Unknown {
		return errors.New(msg)
	}
	return status.Error(code, msg)
}
