package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	urfave "github.com/urfave/cli/v2"

	"github.com/hufu-hsm/hufu/client"

	"github.com/hufu-hsm/hufu/store"
)

// The audit commands work offline, on files an auditor fetched from the admin surface
// (GET /audit/export and GET /audit/public-key): no daemon, no session.

// auditCommands: auditing offline.
func (c *cli) auditCommands() []*urfave.Command {
	return []*urfave.Command{
		group("audit", "verify an audit export offline (no daemon)", "", c.auditVerifyCommand()),
	}
}

func (c *cli) auditVerifyCommand() *urfave.Command {
	fs := newFlags()
	logPath := fs.String("log", "", "the audit export (JSON lines) to verify")
	keyPath := fs.String("key", "", "the audit public key (PEM) that signs checkpoints")
	partial := fs.Bool("partial", false, "accept an export that does not start at record 1 (a range export)")
	atLeast := fs.Uint64("at-least", 0, "the log must be signed through at least this record (from a checkpoint kept earlier)")
	var heads pinnedHeads
	fs.Var(&heads, "head", "a head `N:HASH` printed by an earlier verify: the log must hold record N with exactly that hash (repeatable)")
	return c.command(verb{name: "verify", usage: "verify an audit export (GET /audit/export) against the audit public key; names the first bad record", nargs: noArgs, offline: true, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *logPath == "" || *keyPath == "" {
			return usagef("usage: hufu audit verify --log FILE --key PEM [-head N:HASH]")
		}
		pub, err := readAuditKey(*keyPath)
		if err != nil {
			return err
		}
		f, err := os.Open(*logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.verifyAuditExport(f, pub, *partial, *atLeast, heads)
	}})
}

// verifyAuditExport verifies an audit export read from r against pub and prints what it
// covers; partial accepts an export that does not start at record 1, atLeast is the
// record a checkpoint seen earlier covered, heads the heads saved from earlier
// verifications. hufu audit verify and hufu admin audit verify share it.
func (c *cli) verifyAuditExport(r io.Reader, pub *ecdsa.PublicKey, partial bool, atLeast uint64, heads []store.Head) error {
	res, err := store.VerifyExportPinned(r, pub, heads...)
	var ve *store.VerifyError
	if errors.As(err, &ve) {
		if ve.Seq != 0 {
			return fmt.Errorf("audit log does NOT verify: first bad record %d (line %d): %s: %s", ve.Seq, ve.Line, ve.Reason, ve.Detail)
		}
		return fmt.Errorf("audit log does NOT verify at line %d: %s: %s", ve.Line, ve.Reason, ve.Detail)
	}
	if err != nil {
		return err
	}
	// The export's header says where it starts and ends, and an edited header can hide a cut
	// at the front or a tail cut back to a checkpoint: check both against what the auditor
	// expects.
	if res.From != 1 && !partial {
		return fmt.Errorf("audit log does NOT verify as a whole log: it starts at record %d (records before it are not in the file; pass -partial for a range export)", res.From)
	}
	if res.VerifiedThrough < atLeast {
		return fmt.Errorf("audit log does NOT verify: it is signed only through record %d, but a checkpoint through record %d was seen before: records were cut", res.VerifiedThrough, atLeast)
	}
	fmt.Fprintf(c.out, "audit log verifies: records %d..%d (%d), %d valid checkpoints, signed through record %d\n",
		res.From, res.To, res.Records, res.Checkpoints, res.VerifiedThrough)
	for _, h := range heads {
		fmt.Fprintf(c.out, "pinned head %d matches\n", h.Seq)
	}
	if res.VerifiedThrough < res.To {
		fmt.Fprintf(c.out, "note: records %d..%d are chained but not yet covered by a signed checkpoint\n", res.VerifiedThrough+1, res.To)
	}
	// The signed head is what an auditor keeps: any later log that passes with it holds
	// exactly these records 1..N, which a restored or rolled-back log does not.
	fmt.Fprintf(c.out, "head %s\n(save it; a later verify with -head %s fails on any other log)\n", res.SignedHead, res.SignedHead)
	return nil
}

// pinnedHeads is the repeatable -head N:HASH flag.
type pinnedHeads []store.Head

func (p *pinnedHeads) String() string {
	if p == nil {
		return ""
	}
	out := ""
	for i, h := range *p {
		if i > 0 {
			out += ","
		}
		out += h.String()
	}
	return out
}

func (p *pinnedHeads) Set(s string) error {
	h, err := store.ParseHead(s)
	if err != nil {
		return err
	}
	*p = append(*p, h)
	return nil
}

func readAuditKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseAuditKey(b, path)
}

// parseAuditKey parses the PEM audit public key b, from where (in messages).
func parseAuditKey(b []byte, where string) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: not a PEM PUBLIC KEY", where)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA public key", where)
	}
	return pub, nil
}
