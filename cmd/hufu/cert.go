package main

// The certificate commands (seed manual §1.5, §1.7, §1.8.1): apply for a certificate on a
// split key held in HOME/keys, follow, pay and cancel the order, download, list, renew,
// upgrade, label, check and revoke certificates, read the inbox.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	urfave "github.com/urfave/cli/v2"
)

const certUsage = "cert apply|orders|order|pay|cancel|reorder|download|list|renew|upgrade|label|check|revoke|messages"

// certSynopsis is each subcommand's synopsis, for -h.
var certSynopsis = map[string]string{
	"apply":    "apply -key K [-encryption-key K2] [-years N] [-platforms P,...] [-ca ID] [-sign-letter FILE | -letter SCAN]",
	"reorder":  "reorder ORDER [apply flags]        apply again from a cancelled order",
	"orders":   "orders [-status S] [-search WORDS] [-n N] [-page TOKEN]",
	"order":    "order ORDER                        an order with its progress",
	"pay":      "pay ORDER [-method dev]",
	"cancel":   "cancel ORDER -reason TEXT",
	"download": "download SERIAL [-der] [-o FILE]",
	"list":     "list [-invalid]",
	"renew":    "renew SERIAL [-years N]",
	"upgrade":  "upgrade SERIAL -platforms ID[,ID]  add platforms to a certificate",
	"label":    `label SERIAL LABEL                 ("" clears it)`,
	"check":    "check SERIAL [-pin P]",
	"revoke":   "revoke SERIAL [-reason TEXT] [-yes] [-pin P]",
	"messages": "messages                           the certificate inbox",
}

// certDesc is a subcommand's synopsis, for its help.
func certDesc(sub string) string { return "hufu cert " + certSynopsis[sub] }

// certCommands: the certificate group, and the operators' review desk.
func (c *cli) certCommands() []*urfave.Command {
	return []*urfave.Command{
		group("cert", "certificates on split keys: apply, follow and pay orders, download, renew, revoke", "seed manual §1.5, §1.7, §1.8.1; each subcommand takes -h",
			c.certApplyCommand("apply", "apply for a certificate on a split key", "", noArgs),
			c.certApplyCommand("reorder", "apply again from a cancelled order (apply's flags override its draft)", "ORDER", oneArg),
			c.certOrdersCommand(),
			c.certOrderCommand(),
			c.certPayCommand(),
			c.certCancelCommand(),
			c.certDownloadCommand(),
			c.certListCommand(),
			c.certFollowCommand("renew", "renew a certificate: a renewal order"),
			c.certFollowCommand("upgrade", "add platforms to a certificate: an upgrade order"),
			c.certLabelCommand(),
			c.certCheckCommand(),
			c.certRevokeCommand(),
			c.certMessagesCommand()),
		c.reviewCommand(),
	}
}

func (c *cli) certLabelCommand() *urfave.Command {
	return c.command(verb{name: "label", usage: `name a certificate ("" clears the label)`, args: "SERIAL LABEL", desc: certDesc("label"), nargs: twoArgs,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
			resp, err := certs.SetCertificateLabel(ctx, &hufuv1.SetCertificateLabelRequest{Serial: pos[0], Label: pos[1]})
			if err != nil {
				return err
			}
			c.printCert(resp.Certificate)
			return nil
		}})
}

func (c *cli) certMessagesCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "messages", usage: "the certificate inbox", desc: certDesc("messages"), fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
			resp, err := certs.ListMessages(ctx, &hufuv1.ListMessagesRequest{PageSize: 50})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				for _, m := range resp.Messages {
					fmt.Fprintf(c.out, "%s  %s  %s\n", m.Time.AsTime().Local().Format(time.DateTime), m.Title, m.Body)
				}
				return nil
			})
		}})
}

// encryptionKey returns the key of a pair's encryption certificate and its CSR, signed by
// that key: encKeyID, or when empty a new split key made here two-party exactly as `hufu key
// create` makes one, under pin (the signing key keyID's PIN: one PIN per application).
func (c *cli) encryptionKey(ctx context.Context, conn *client.Conn, ks *keystore.Store, pin, keyID, encKeyID string) (string, []byte, error) {
	if encKeyID == "" {
		e, err := client.CreateKey(ctx, conn, ks, pin, "encryption key of "+keyID)
		if err != nil {
			return "", nil, fmt.Errorf("making the encryption key: %w", err)
		}
		encKeyID = e.ID
		fmt.Fprintf(c.out, "created encryption key %s (same PIN as %s)\n", e.ID, keyID)
	}
	encKey, err := client.OpenKey(ctx, conn, ks, encKeyID, pin)
	if err != nil {
		return "", nil, err
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, encKey)
	if err != nil {
		return "", nil, fmt.Errorf("signing the encryption certificate's request with its split key: %w", err)
	}
	return encKeyID, csr, nil
}

// certApply submits an application for a certificate pair: the signing certificate on -key
// and the encryption certificate on a second split key, made here two-party exactly as
// `hufu key create` makes one, under the same PIN (one PIN per application, as the app asks
// for one; the appliance checks it per key, so each key still locks on its own), unless
// -encryption-key names one. Each CSR is signed by its own key and (with -sign-letter) the
// authorisation letter by the signing key, the phone half here and the appliance's half
// there.
func (c *cli) certApplyCommand(sub, usage, args string, n argCount) *urfave.Command {
	fs := newFlags()
	keyID := fs.String("key", "", "the split key of the signing certificate")
	encKeyID := fs.String("encryption-key", "", "the split key of the encryption certificate (default: a new key made now under the same PIN)")
	caID := fs.String("ca", "", "CA id (default: the first offered)")
	years := fs.Uint("years", 0, "validity in years, 1 to 3")
	platforms := fs.String("platforms", "", "comma-separated platform ids (default: the current platform)")
	letter := fs.String("letter", "", "scanned authorisation letter (jpg, png or pdf)")
	signLetter := fs.String("sign-letter", "", "text file of the authorisation letter to sign online with the key")
	pinFlag := fs.String("pin", "", "certificate PIN (else HUFU_PIN, else asked)")
	requestID := fs.String("request-id", "", "idempotency key (default: a new one)")
	return c.command(verb{name: sub, usage: usage, args: args, desc: certDesc(sub), nargs: n, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		reorder := ""
		switch {
		case sub == "reorder" && len(pos) == 1:
			reorder = pos[0]
		case sub == "reorder":
			return usagef("cert reorder ORDER [apply flags]")
		case len(pos) != 0:
			return usagef("cert apply takes no arguments (%q): the key is -key K", pos[0])
		}
		req := &hufuv1.ApplyCertificateRequest{KeyId: *keyID, CaId: *caID, ValidityYears: uint32(*years), ReorderedFrom: reorder}
		if reorder != "" {
			draft, err := certs.ReorderDraft(ctx, &hufuv1.ReorderDraftRequest{OrderId: reorder})
			if err != nil {
				return err
			}
			req = draft.Draft
			if *keyID != "" {
				req.KeyId = *keyID
			}
			if *encKeyID != "" || req.EncryptionKeyId == req.KeyId {
				req.EncryptionKeyId = *encKeyID
			}
			if *caID != "" {
				req.CaId = *caID
			}
			if *years != 0 {
				req.ValidityYears = uint32(*years)
			}
		}
		if *platforms != "" {
			req.Platforms = strings.Split(*platforms, ",")
		}
		if len(req.Platforms) == 0 {
			cur, err := conn.Platforms.GetCurrentPlatform(ctx, &hufuv1.GetCurrentPlatformRequest{})
			if err != nil {
				return fmt.Errorf("choose -platforms (no current platform: %w)", err)
			}
			if cur.GetPlatform() == nil {
				return usagef("choose -platforms, or a current platform with `hufu platform use`")
			}
			req.Platforms = []string{cur.GetPlatform().GetId()}
		}
		if req.CaId == "" || req.ValidityYears == 0 {
			cas, err := certs.ListCertificateAuthorities(ctx, &hufuv1.ListCertificateAuthoritiesRequest{})
			if err != nil {
				return err
			}
			if len(cas.Authorities) == 0 {
				return errors.New("the appliance offers no CA")
			}
			if req.CaId == "" {
				req.CaId = cas.Authorities[0].Id
			}
			if req.ValidityYears == 0 {
				req.ValidityYears = 1
			}
		}
		if *encKeyID != "" && reorder == "" {
			req.EncryptionKeyId = *encKeyID
		}
		if req.KeyId == "" {
			return usagef("-key is required")
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		if _, err := ks.Stat(req.KeyId); err != nil {
			return err
		}
		pin, err := c.pin(*pinFlag, "certificate PIN: ")
		if err != nil {
			return err
		}
		key, err := client.OpenKey(ctx, conn, ks, req.KeyId, pin)
		if err != nil {
			return err
		}
		if req.Csr, err = smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, key); err != nil {
			return fmt.Errorf("signing the certificate request with the split key: %w", err)
		}
		if req.EncryptionKeyId, req.EncryptionCsr, err = c.encryptionKey(ctx, conn, ks, pin, req.KeyId, req.EncryptionKeyId); err != nil {
			return err
		}
		switch {
		case *letter != "" && *signLetter != "":
			return usagef("give -letter or -sign-letter, not both")
		case *letter != "":
			b, err := os.ReadFile(*letter)
			if err != nil {
				return err
			}
			media := mime.TypeByExtension(strings.ToLower(filepath.Ext(*letter)))
			media, _, _ = strings.Cut(media, ";")
			req.Authorisation = &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Scan{Scan: &hufuv1.ScannedLetter{
				FileName: filepath.Base(*letter), MediaType: media, Content: b}}}
		case *signLetter != "":
			b, err := os.ReadFile(*signLetter)
			if err != nil {
				return err
			}
			sig, err := key.Sign(rand.Reader, b, &cosign.SignerOpts{})
			if err != nil {
				return fmt.Errorf("signing the authorisation letter: %w", err)
			}
			req.Authorisation = &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Online{Online: &hufuv1.SignedLetter{Letter: b, Signature: sig}}}
		default:
			return usagef("the authorisation letter is required: -letter SCAN or -sign-letter TEXT")
		}
		req.RequestId = *requestID
		if req.RequestId == "" {
			req.RequestId = client.NewKeyID()
		}
		resp, err := certs.ApplyCertificate(ctx, req)
		if err != nil {
			return err
		}
		c.printOrder(resp.Order, false)
		fmt.Fprintln(c.out, "submitted for CA review; `hufu cert messages` shows the result")
		return nil
	}})
}

func statusArg(s string) (hufuv1.OrderStatus, error) {
	switch s {
	case "", "all":
		return hufuv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, nil
	case "review", "in-review":
		return hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW, nil
	case "payment", "awaiting-payment", "unpaid":
		return hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT, nil
	case "completed", "done":
		return hufuv1.OrderStatus_ORDER_STATUS_COMPLETED, nil
	case "cancelled":
		return hufuv1.OrderStatus_ORDER_STATUS_CANCELLED, nil
	}
	return 0, usagef("status %q: want all, review, payment, completed or cancelled", s)
}

func orderStatusName(s hufuv1.OrderStatus) string {
	switch s {
	case hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW:
		return "in review 审核中"
	case hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT:
		return "awaiting payment 待支付"
	case hufuv1.OrderStatus_ORDER_STATUS_COMPLETED:
		return "completed 已完成"
	case hufuv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return "cancelled 已取消"
	}
	return "unknown"
}

func (c *cli) certOrdersCommand() *urfave.Command {
	fs := newFlags()
	st := fs.String("status", "all", "all, review, payment, completed or cancelled")
	kw := fs.String("search", "", "words to find, each in what the listing shows (CA, platform id or name, status, kind, ids), any case")
	size := fs.Int("n", 20, "page size")
	page := fs.String("page", "", "page token from the previous page")
	o := outputFlag(fs)
	return c.command(verb{name: "orders", usage: "your certificate orders: 审核中 → 待支付 → 已完成 / 已取消", desc: certDesc("orders"), nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		status, err := statusArg(*st)
		if err != nil {
			return err
		}
		if *kw != "" {
			return c.searchOrders(ctx, conn, certs, status, *kw, *size, o)
		}
		resp, err := certs.ListOrders(ctx, &hufuv1.ListOrdersRequest{Status: status, PageSize: int32(*size), PageToken: *page})
		if err != nil {
			return err
		}
		return c.emit(o, resp, func() error {
			for _, o := range resp.Orders {
				c.printOrder(o, false)
			}
			if resp.NextPageToken != "" {
				fmt.Fprintf(c.out, "more: -page %s\n", resp.NextPageToken)
			}
			return nil
		})
	}})
}

// orderValidity is what an order buys in time: its years, or for an upgrade (which adds
// platforms to a certificate and keeps its validity) "有效期不变".
func orderValidity(o *hufuv1.Order) string {
	switch {
	case o.ValidityYears != 0:
		return fmt.Sprintf("%d年", o.ValidityYears)
	case o.Kind == hufuv1.OrderKind_ORDER_KIND_UPGRADE:
		return "有效期不变"
	}
	return "-"
}

// searchOrders prints up to n of the account's orders that match every word of query in
// what the listing shows. The appliance's keyword matches ids only, so the orders are listed
// page by page and matched here.
func (c *cli) searchOrders(ctx context.Context, conn *client.Conn, certs hufuv1.CertificateServiceClient, status hufuv1.OrderStatus, query string, n int, out *outputFormat) error {
	matched := &hufuv1.ListOrdersResponse{}
	names := map[string]string{} // platform id -> name
	if ps, err := conn.Platforms.ListPlatforms(ctx, &hufuv1.ListPlatformsRequest{}); err == nil {
		for _, p := range ps.Platforms {
			names[p.Id] = p.Name
		}
	}
	words := strings.Fields(strings.ToLower(query))
	found, token := 0, ""
	for found < n {
		resp, err := certs.ListOrders(ctx, &hufuv1.ListOrdersRequest{Status: status, PageSize: 100, PageToken: token})
		if err != nil {
			return err
		}
		for _, o := range resp.Orders {
			if found < n && orderMatches(o, names, words) {
				matched.Orders = append(matched.Orders, o)
				if !out.json() {
					c.printOrder(o, false)
				}
				found++
			}
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if out.json() {
		return c.emit(out, matched, nil)
	}
	if found == 0 {
		fmt.Fprintf(c.out, "no order matches %q\n", query)
	}
	return nil
}

// orderMatches says whether every word occurs, in any case, in what the listing shows of the
// order or in its ids.
func orderMatches(o *hufuv1.Order, platformNames map[string]string, words []string) bool {
	fields := []string{o.Id, o.KeyId, o.Serial, o.CaId, o.CaName, orderStatusName(o.Status), o.Kind.String(), orderValidity(o)}
	fields = append(fields, o.Regions...)
	for _, p := range o.Platforms {
		fields = append(fields, p, platformNames[p])
	}
	text := strings.ToLower(strings.Join(fields, " "))
	for _, w := range words {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

func (c *cli) printOrder(o *hufuv1.Order, detail bool) {
	fmt.Fprintf(c.out, "%s  %-24s %s  %s  %s  %s  ¥%d.%02d\n", o.Id, orderStatusName(o.Status), strings.TrimPrefix(o.Kind.String(), "ORDER_KIND_"),
		o.CaName, orderValidity(o), strings.Join(o.Regions, ","), o.PriceFen/100, o.PriceFen%100)
	if !detail {
		return
	}
	fmt.Fprintf(c.out, "  key %s  subject %s %s  platforms %s\n", o.KeyId, o.SubjectName, o.SubjectIdMasked, strings.Join(o.Platforms, ","))
	if o.EncryptionKeyId != "" {
		fmt.Fprintf(c.out, "  encryption key %s\n", o.EncryptionKeyId)
	}
	if o.AuthorisationMethod != "" {
		fmt.Fprintf(c.out, "  authorisation letter: %s, sha256 %s\n", o.AuthorisationMethod, o.AuthorisationSha256)
	}
	if o.CancelReason != "" {
		fmt.Fprintf(c.out, "  cancelled by %s: %s\n", o.CancelledBy, o.CancelReason)
	}
	if o.Serial != "" {
		downloaded := "not downloaded yet (hufu cert download)"
		if o.Downloaded {
			downloaded = "downloaded " + o.DownloadedAt.AsTime().Local().Format(time.DateTime)
		}
		if o.EncryptionSerial != "" {
			fmt.Fprintf(c.out, "  signing certificate %s, encryption certificate %s, %s\n", o.Serial, o.EncryptionSerial, downloaded)
		} else {
			fmt.Fprintf(c.out, "  certificate %s, %s\n", o.Serial, downloaded)
		}
	}
	fmt.Fprintln(c.out, "  progress (审核进度):")
	for _, s := range o.Steps {
		note := ""
		if s.Note != "" {
			note = "  " + s.Note
		}
		fmt.Fprintf(c.out, "    %s  %-10s %s%s\n", s.Time.AsTime().Local().Format(time.DateTime), s.Name, s.Actor, note)
	}
}

func (c *cli) certOrderCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "order", usage: "an order with its progress", args: "ORDER", desc: certDesc("order"), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		resp, err := certs.GetOrder(ctx, &hufuv1.GetOrderRequest{OrderId: pos[0]})
		if err != nil {
			return err
		}
		return c.emit(o, resp, func() error { c.printOrder(resp.Order, true); return nil })
	}})
}

func (c *cli) certPayCommand() *urfave.Command {
	fs := newFlags()
	method := fs.String("method", "dev", "payment method")
	idem := fs.String("idempotency-key", "", "repeat a payment with the same key (default: derived from the order)")
	return c.command(verb{name: "pay", usage: "pay an order", args: "ORDER", desc: certDesc("pay"), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		if *idem == "" {
			*idem = "pay-" + pos[0] // one payment per order unless told otherwise
		}
		resp, err := certs.PayOrder(ctx, &hufuv1.PayOrderRequest{OrderId: pos[0], Method: *method, IdempotencyKey: *idem})
		if err != nil {
			return err
		}
		c.printOrder(resp.Order, false)
		if resp.Certificate == nil { // an enterprise verification (对公打款认证) carries no certificate
			fmt.Fprintln(c.out, "paid (确认支付); the order carries no certificate")
			return nil
		}
		c.printCert(resp.Certificate)
		if pair := resp.Certificate.GetPairSerial(); pair != "" {
			fmt.Fprintf(c.out, "issued the signing certificate %s and the encryption certificate %s\n", resp.Certificate.GetSerial(), pair)
		}
		fmt.Fprintf(c.out, "paid; download it with: hufu cert download %s\n", resp.Certificate.GetSerial())
		return nil
	}})
}

func (c *cli) certCancelCommand() *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "why (required)")
	return c.command(verb{name: "cancel", usage: "cancel an order", args: "ORDER", desc: certDesc("cancel"), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		resp, err := certs.CancelOrder(ctx, &hufuv1.CancelOrderRequest{OrderId: pos[0], Reason: *reason})
		if err != nil {
			return err
		}
		c.printOrder(resp.Order, false)
		return nil
	}})
}

func (c *cli) certDownloadCommand() *urfave.Command {
	fs := newFlags()
	der := fs.Bool("der", false, "DER instead of PEM")
	out := fs.String("o", "", "output file (default SERIAL.pem or SERIAL.cer); the chain goes to OUT with -chain before the extension")
	return c.command(verb{name: "download", usage: "download a certificate (PEM, or DER with -der)", args: "SERIAL", desc: certDesc("download"), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		format, ext := hufuv1.CertificateFormat_CERTIFICATE_FORMAT_PEM, ".pem"
		if *der {
			format, ext = hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER, ".cer"
		}
		resp, err := certs.DownloadCertificate(ctx, &hufuv1.DownloadCertificateRequest{Serial: pos[0], Format: format})
		if err != nil {
			return err
		}
		if *out == "" {
			*out = pos[0] + ext
		}
		if err := os.WriteFile(*out, resp.CertificateData, 0o644); err != nil {
			return err
		}
		base := strings.TrimSuffix(*out, filepath.Ext(*out))
		files := []string{*out}
		for i, ch := range resp.Chain {
			name := base + "-chain" + ext
			if len(resp.Chain) > 1 {
				name = fmt.Sprintf("%s-chain-%d%s", base, i+1, ext)
			}
			if err := os.WriteFile(name, ch, 0o644); err != nil {
				return err
			}
			files = append(files, name)
		}
		if resp.PairCertificate != nil {
			// The pair's other certificate, beside the first: SERIAL-encryption.pem or
			// SERIAL-signing.pem (same chain).
			name := base + "-" + usageText(resp.PairCertificate.Usage) + ext
			if err := os.WriteFile(name, resp.PairCertificateData, 0o644); err != nil {
				return err
			}
			files = append(files, name)
			fmt.Fprintf(c.out, "%s certificate %s, %s certificate %s\n", usageText(resp.Certificate.Usage), resp.Certificate.Serial,
				usageText(resp.PairCertificate.Usage), resp.PairCertificate.Serial)
		}
		fmt.Fprintln(c.out, "wrote", strings.Join(files, ", "))
		return nil
	}})
}

func certStatusText(s hufuv1.CertificateStatus) string {
	switch s {
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE:
		return "active 生效中"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED:
		return "revoked 已注销"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_DISABLED:
		return "disabled 已禁用"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_SUPERSEDED:
		return "superseded 已替换"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_EXPIRED:
		return "expired 已过期"
	}
	return "unknown"
}

func (c *cli) printCert(ct *hufuv1.Certificate) {
	if ct == nil {
		return
	}
	label := ""
	if ct.Label != "" {
		label = "  [" + ct.Label + "]"
	}
	switch ct.KeyPlacement {
	case hufuv1.KeyPlacement_KEY_PLACEMENT_THIS_DEVICE:
		label += "  (key on this device)"
	case hufuv1.KeyPlacement_KEY_PLACEMENT_OTHER_DEVICE:
		label += "  (key held on another device)"
	}
	if ct.DisabledReason != "" {
		label += "  disabled: " + ct.DisabledReason
	}
	fmt.Fprintf(c.out, "%s  %-18s %s .. %s  key %s  %s%s\n", ct.Serial, certStatusText(ct.Status),
		ct.NotBefore.AsTime().Local().Format(time.DateOnly), ct.NotAfter.AsTime().Local().Format(time.DateOnly),
		ct.KeyId, strings.Join(ct.Platforms, ","), label)
	if ct.PairSerial != "" {
		fmt.Fprintf(c.out, "  %s certificate; its %s certificate: %s  key %s\n", usageText(ct.Usage), usageText(otherUsage(ct.Usage)), ct.PairSerial, ct.PairKeyId)
	}
}

func (c *cli) certListCommand() *urfave.Command {
	fs := newFlags()
	invalid := fs.Bool("invalid", false, "list no longer valid certificates (已失效) instead of active ones")
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "your certificates (-invalid: those no longer valid)", desc: certDesc("list"), nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		view := hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE
		if *invalid {
			view = hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_NO_LONGER_VALID
		}
		resp, err := certs.ListCertificates(ctx, &hufuv1.ListCertificatesRequest{View: view})
		if err != nil {
			return err
		}
		return c.emit(o, resp, func() error {
			for _, ct := range resp.Certificates {
				c.printCert(ct)
			}
			return nil
		})
	}})
}

func (c *cli) certFollowCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	years := fs.Uint("years", 1, "renew: validity in years")
	platforms := fs.String("platforms", "", "upgrade: comma-separated platform ids to add")
	return c.command(verb{name: sub, usage: usage, args: "SERIAL", desc: certDesc(sub), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		var o *hufuv1.Order
		if sub == "renew" {
			resp, err := certs.RenewCertificate(ctx, &hufuv1.RenewCertificateRequest{RequestId: client.NewKeyID(), Serial: pos[0], ValidityYears: uint32(*years)})
			if err != nil {
				return err
			}
			o = resp.Order
		} else {
			if *platforms == "" {
				return errors.New("cert upgrade SERIAL -platforms ID[,ID]")
			}
			resp, err := certs.UpgradeCertificate(ctx, &hufuv1.UpgradeCertificateRequest{RequestId: client.NewKeyID(), Serial: pos[0], Platforms: strings.Split(*platforms, ",")})
			if err != nil {
				return err
			}
			o = resp.Order
		}
		c.printOrder(o, false)
		fmt.Fprintf(c.out, "the same key pair is kept; pay with: hufu cert pay %s\n", o.Id)
		return nil
	}})
}

// certCheck runs the appliance's checks, then the two-party test signature and decryption
// with the phone half here and the appliance's half over the ticket the PIN check opened.
func (c *cli) certCheckCommand() *urfave.Command {
	fs := newFlags()
	pinFlag := fs.String("pin", "", "certificate PIN (else HUFU_PIN, else asked)")
	return c.command(verb{name: "check", usage: "check a certificate with its key (signs and verifies a challenge)", args: "SERIAL", desc: certDesc("check"), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		pin, err := c.pin(*pinFlag, "certificate PIN: ")
		if err != nil {
			return err
		}
		resp, err := certs.CheckCertificate(ctx, &hufuv1.CheckCertificateRequest{Serial: pos[0], Pin: pin})
		if err != nil {
			return err
		}
		failed := 0
		report := func(name string, ok bool, detail string) {
			mark := "ok  "
			if !ok {
				mark, failed = "FAIL", failed+1
			}
			fmt.Fprintf(c.out, "%s %-10s %s\n", mark, name, detail)
		}
		for _, s := range resp.Steps {
			report(s.Name, s.Ok, s.Detail)
		}
		dl, err := certs.DownloadCertificate(ctx, &hufuv1.DownloadCertificateRequest{Serial: pos[0], Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
		if err != nil {
			return err
		}
		// A pair is checked with both keys: the test message is signed with the signing key
		// and verified under the signing certificate, the test ciphertext (to the encryption
		// certificate) decrypted with the encryption key.
		signDER, signKey := dl.CertificateData, dl.Certificate.KeyId
		decryptKey, decryptTicket := dl.Certificate.KeyId, resp.Ticket
		if resp.SignKeyId != "" {
			signKey, decryptKey, decryptTicket = resp.SignKeyId, resp.DecryptKeyId, resp.DecryptTicket
		}
		if dl.PairCertificate != nil && dl.PairCertificate.KeyId == signKey {
			signDER = dl.PairCertificateData
		}
		cert, err := smx509.ParseCertificate(signDER)
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		pairNote := ""
		if dl.PairCertificate != nil {
			pairNote = " (signing key " + signKey + ")"
		}
		entry, err := ks.Load(signKey)
		switch {
		case err != nil:
			report("sign", false, "this device does not hold the key's phone half: "+err.Error())
		case resp.Ticket == "":
			report("sign", false, "skipped: the key cannot be used")
		default:
			key := client.NewKey(conn, entry, client.TicketCredential(resp.Ticket))
			sig, err := key.SignContext(ctx, rand.Reader, resp.TestMessage, &cosign.SignerOpts{})
			switch {
			case err != nil:
				report("sign", false, err.Error())
			case cert.CheckSignature(smx509.SM2WithSM3, resp.TestMessage, sig) != nil:
				report("sign", false, "the two-party signature does not verify under the certificate")
			default:
				report("sign", true, "two-party signature verifies under the certificate"+pairNote)
			}
		}
		if dl.PairCertificate != nil {
			pairNote = " (encryption key " + decryptKey + ")"
		}
		entry, err = ks.Load(decryptKey)
		switch {
		case err != nil:
			report("decrypt", false, "this device does not hold the key's phone half: "+err.Error())
		case decryptTicket == "":
			report("decrypt", false, "skipped: the key cannot be used")
		default:
			key := client.NewKey(conn, entry, client.TicketCredential(decryptTicket))
			plain, err := key.Decrypt(nil, resp.TestCiphertext, nil)
			if d := sm3.Sum(plain); err == nil && string(d[:]) == string(resp.TestPlaintextSm3) {
				report("decrypt", true, "two-party decryption of a test ciphertext to the certificate"+pairNote)
			} else {
				report("decrypt", false, fmt.Sprint("the test ciphertext did not decrypt: ", err))
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d check steps failed", failed)
		}
		return nil
	}})
}

func (c *cli) certRevokeCommand() *urfave.Command {
	fs := newFlags()
	pinFlag := fs.String("pin", "", "certificate PIN (else HUFU_PIN, else asked)")
	reason := fs.String("reason", "", "why")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	return c.command(verb{name: "revoke", usage: "revoke a certificate: irreversible, the server share is deleted (unrecoverable after the next KEK erasure)", args: "SERIAL", desc: certDesc("revoke"), nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		certs := hufuv1.NewCertificateServiceClient(conn.ClientConn())
		pre, err := certs.PreviewRevocation(ctx, &hufuv1.PreviewRevocationRequest{Serial: pos[0]})
		if err != nil {
			return err
		}
		fmt.Fprintln(c.errOut, "注销证书不能恢复：平台立即删除在用的服务器端密钥分量，不再用它签名或解密；其加密副本在平台下一次密钥销毁后彻底无法恢复，此后无法解密原有文件。")
		fmt.Fprintln(c.errOut, "Revoking is irreversible: the appliance deletes its half of the key from its live store at once and never signs or")
		fmt.Fprintln(c.errOut, "decrypts with it again; a wrapped copy stays in its old files and backups until its next KEK erasure (scheduled by")
		fmt.Fprintln(c.errOut, "the operator, weekly by default), after which nothing encrypted to this certificate can be decrypted by anyone.")
		if len(pre.Acknowledge) > 0 {
			fmt.Fprintln(c.errOut, "These certificates of the same key are revoked with it:")
			for _, ct := range pre.Certificates {
				if ct.Serial != pos[0] {
					fmt.Fprintf(c.errOut, "  %s  %s  %s\n", ct.Serial, certStatusText(ct.Status), ct.CaId)
				}
			}
		}
		if !*yes {
			answer, err := c.prompt("type the serial to confirm: ")
			if err != nil {
				return err
			}
			if strings.TrimSpace(answer) != pos[0] {
				return errors.New("not confirmed; nothing revoked")
			}
		}
		pin, err := c.pin(*pinFlag, "certificate PIN: ")
		if err != nil {
			return err
		}
		resp, err := certs.RevokeCertificate(ctx, &hufuv1.RevokeCertificateRequest{Serial: pos[0], Pin: pin, Reason: *reason, ConfirmIrreversible: true,
			AcknowledgedSerials: pre.Acknowledge})
		if err != nil {
			return err
		}
		c.printCert(resp.Certificate)
		return nil
	}})
}

// usageText names a certificate's usage as the listing and download show it.
func usageText(u hufuv1.CertificateUsage) string {
	switch u {
	case hufuv1.CertificateUsage_CERTIFICATE_USAGE_SIGNING:
		return "signing"
	case hufuv1.CertificateUsage_CERTIFICATE_USAGE_ENCRYPTION:
		return "encryption"
	}
	return "single"
}

func otherUsage(u hufuv1.CertificateUsage) hufuv1.CertificateUsage {
	if u == hufuv1.CertificateUsage_CERTIFICATE_USAGE_SIGNING {
		return hufuv1.CertificateUsage_CERTIFICATE_USAGE_ENCRYPTION
	}
	return hufuv1.CertificateUsage_CERTIFICATE_USAGE_SIGNING
}
