package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/attachments"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/enterprises"
	"github.com/hufu-hsm/hufu/daemon/seals"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// ensureCAs creates the configured embedded CAs that do not exist yet (hufud init). Their
// keys are generated in Go and stored only wrapped under the HSM's KEK.
func ensureCAs(ctx context.Context, cfg config.Config, kr *hsm.Keyring) ([]string, error) {
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(cfg.DataDir, "store"), Signer: kr.AuditSigner()})
	if err != nil {
		return nil, err
	}
	defer st.Close(ctx)
	var done []string
	for _, c := range cfg.Certificates.CAs {
		if c.Type != "embedded" {
			continue
		}
		// The issuing CA's certificate points to the root's CRL and certificate under
		// certificates.public_url; the identity key is not needed for that.
		created, err := ca.Ensure(ctx, st, kr, c.ID, c.Name, store.SystemClock{}.Now(), ca.Options{PublicURL: cfg.Certificates.PublicURL})
		if err != nil {
			return done, fmt.Errorf("CA %s: %w", c.ID, err)
		}
		if created {
			done = append(done, "created embedded CA "+c.ID+" (SM2 root and issuing CA, keys wrapped in the HSM)")
		} else {
			done = append(done, "embedded CA "+c.ID+" already present; left unchanged")
		}
	}
	return done, anchorNewStore(ctx, st, kr)
}

// anchorNewStore gives a store init has just made the HSM's audit anchor, at its newest
// checkpoint, on a token that has none: a new installation's first start then finds its
// anchor as every later start does, and the warning of a start without one stays for a
// token that lost or never had it under a store already in use. A token that has an anchor
// keeps it: a new store under it is refused at start until acknowledged.
func anchorNewStore(ctx context.Context, st *store.Store, kr *hsm.Keyring) error {
	if !st.Created() {
		return nil
	}
	if _, found, err := kr.AuditAnchor(ctx); err != nil || found {
		return err
	}
	var size uint64
	var head [32]byte
	if c := st.LastCheckpoint(); c != nil {
		size, head = c.Size, c.Head
	}
	if err := kr.RaiseAuditAnchor(ctx, size, head); err != nil {
		return fmt.Errorf("creating the audit anchor of the new store: %w", err)
	}
	return nil
}

// buildCertificates opens the configured CAs and builds the certificate service.
func (d *Daemon) buildCertificates(ctx context.Context) error {
	cc := d.cfg.Certificates
	opts := certs.Options{ValidityYears: cc.ValidityYears, ErasureInterval: d.cfg.Keys.Erasure.Interval.Std()}
	caOpts, err := caOptions(d.cfg, d.opts.Log)
	if err != nil {
		return err
	}
	for _, c := range cc.CAs {
		e, err := ca.Open(ctx, d.store, d.keyring, d.opts.Clock, c.ID, c.Name, caOpts)
		if err != nil {
			return fmt.Errorf("%w (run hufud init after adding a CA)", err)
		}
		d.addEmbeddedCA(e)
		prices := map[string]map[int]int64{}
		for _, p := range c.Prices {
			if prices[p.CertKind] == nil {
				prices[p.CertKind] = map[int]int64{}
			}
			prices[p.CertKind][p.ValidityYears] = int64(p.AmountFen)
		}
		opts.CAs = append(opts.CAs, certs.CA{Connector: e, Prices: prices, UpgradePriceFen: int64(c.UpgradePriceFen)})
	}
	if d.attachments, err = attachments.New(attachments.Options{}, d.store); err != nil {
		return err
	}
	d.certs, err = certs.New(opts, certs.Deps{
		Store: d.store, Attachments: d.attachments, Keys: d.keys, Accounts: d.accounts, Payments: d.payments, Books: d.payments, Clock: d.opts.Clock, Log: d.opts.Log,
		Registry: d.opts.Registry, FaultInjection: d.opts.IssuanceFault,
	})
	if err != nil {
		return err
	}
	d.payments.SetOrders(d.certs)
	// Keys whose certificates have all expired refuse to cosign.
	d.keys.SetCertificateGate(d.certs)
	return d.buildEnterprises()
}

// buildEnterprises builds the enterprise domain over certificates and keys, the attachment
// store its applications use, and the seals that enterprises and people own.
func (d *Daemon) buildEnterprises() error {
	roles := &sealRoles{}
	var err error
	d.seals, err = seals.New(seals.Options{}, seals.Deps{Store: d.store, Enterprises: roles, Certificates: d.certs,
		Clock: d.opts.Clock, Registry: d.opts.Registry})
	if err != nil {
		return err
	}
	et := d.cfg.Enterprises.Transfer
	required := map[string][]string{}
	for _, c := range d.cfg.Certificates.CAs {
		required[c.ID] = c.RequiredAttachments
	}
	d.enterprises, err = enterprises.New(enterprises.Options{RequiredAttachments: required, Transfer: enterprises.TransferOptions{
		AccountName: et.AccountName, Bank: et.Bank, AccountNumber: et.AccountNumber, Validity: et.Validity.Std(),
		MaxAmountFen: int64(et.MaxAmountFen), VerificationPriceFen: int64(d.cfg.Enterprises.VerificationPriceFen),
	}}, enterprises.Deps{
		Store: d.store, Keyring: d.keyring, Accounts: d.accounts, Certs: d.certs, Keys: d.keys, Attachments: d.attachments,
		Seals: d.seals, Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	if err != nil {
		return err
	}
	roles.e = d.enterprises
	d.certs.SetSeals(d.seals)
	// A paid enterprise certificate completes its claim inside the payment's transaction.
	d.certs.SetEnterprises(d.enterprises)
	return nil
}

// sealRoles answers the seals domain's role questions from the enterprise domain, which is
// built after it (enterprises withdraws a leaving member's seal authorisations).
type sealRoles struct{ e *enterprises.Service }

func (r *sealRoles) RoleIn(ctx context.Context, uscc, userID string) (seals.Role, error) {
	role, err := r.e.RoleIn(ctx, uscc, userID)
	switch hufuv1.MemberRole(role) {
	case hufuv1.MemberRole_MEMBER_ROLE_ADMIN:
		return seals.RoleAdmin, err
	case hufuv1.MemberRole_MEMBER_ROLE_STAFF:
		return seals.RoleStaff, err
	}
	return seals.RoleNone, err
}

// CRL returns the current CRL (DER) of the configured CA caID, for the admin listener
// (served there as the CRL distribution point). It is regenerated after every revocation
// and once half of certificates.crl_next_update has passed.
func (d *Daemon) CRL(ctx context.Context, caID string) ([]byte, error) { return d.certs.CRL(ctx, caID) }

// CAIDs lists the configured CAs.
func (d *Daemon) CAIDs() []string { return d.certs.CAIDs() }
