package daemon

import "github.com/hufu-hsm/hufu/daemon/scan"

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
		Enterprises: d.enterprises, Seals: d.seals, Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	return err
}
