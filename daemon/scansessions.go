package daemon

import (
	"github.com/hufu-hsm/hufu/daemon/openings"
	"github.com/hufu-hsm/hufu/daemon/scan"
)

// buildOpenings builds the bid openings over the keys and certificates, and binds the keys'
// plain decryption to them. Reports are signed by the HSM-resident audit key.
func (d *Daemon) buildOpenings() error {
	var err error
	oc := d.cfg.Openings
	d.openings, err = openings.New(openings.Options{MaxEnvelopes: oc.MaxEnvelopes, MaxWindow: oc.MaxWindow.Std(), ReleaseChunk: oc.ReleaseChunk}, openings.Deps{
		Store: d.store, Keyring: d.keyring, Signer: d.keyring.AuditSigner(), Keys: d.keys, Certs: d.certs, Accounts: d.accounts,
		Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	if err != nil {
		return err
	}
	d.keys.SetDecryptGuard(d.openings)
	return nil
}

// buildScan builds the business systems' scan sessions over the certificates, keys,
// enterprises and seals. QR payloads are signed by the HSM-resident signing key.
func (d *Daemon) buildScan() error {
	sc := d.cfg.Scan
	addr := sc.Address
	if addr == "" {
		addr = d.cfg.Listen.GRPC
	}
	var err error
	d.scan, err = scan.New(scan.Options{Address: addr, DefaultTTL: sc.SessionTTL.Std(), MaxTTL: sc.MaxSessionTTL.Std(),
		SessionsPerMinute: sc.SessionsPerMinute}, scan.Deps{
		Store: d.store, Signer: d.keyring.AuditSigner(), Keyring: d.keyring, Accounts: d.accounts, Certs: d.certs, Keys: d.keys,
		Enterprises: d.enterprises, Seals: d.seals, Openings: d.openings, Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	return err
}
