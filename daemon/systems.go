package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// System clients registered at run time on the admin surface (admin.SystemClients): their
// permissions live in the store (y/<name>) and in memory for the gate, beside the ones
// configured in system_clients, which stay read-only here. In development the daemon also
// issues the client certificate with its development CA; in production the deployment's
// client CA (tls.client_ca_file) issues it and only the permissions are registered.

var systemClientRecords = store.NewCollection(store.KindSystem, func() *storepb.SystemClient { return new(storepb.SystemClient) })

var systemNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

type systemClients struct {
	d *Daemon

	mu         sync.RWMutex
	registered map[string]map[string]bool // name -> service -> allowed

	// afterCommit, if set (tests only), runs between a change's commit and the update of
	// the gate's table, where a concurrent change can slip in.
	afterCommit atomic.Pointer[func(name string)]
}

var _ admin.SystemClients = (*systemClients)(nil)

// load reads the registered clients from the store.
func (sc *systemClients) load(ctx context.Context) error {
	m := map[string]map[string]bool{}
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := systemClientRecords.List(ctx, sc.d.store, "", opts, nil)
		if err != nil {
			return fmt.Errorf("system clients: %w", err)
		}
		for _, it := range page.Items {
			m[it.Value.Name] = serviceSet(it.Value.Services)
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	sc.mu.Lock()
	sc.registered = m
	sc.mu.Unlock()
	return nil
}

func serviceSet(services []string) map[string]bool {
	m := make(map[string]bool, len(services))
	for _, s := range services {
		m[s] = true
	}
	return m
}

// allowed is the gate's check for clients registered at run time.
func (sc *systemClients) allowed(name, service string) bool {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return sc.registered[name][service]
}

// List returns the configured clients and then the registered ones.
func (sc *systemClients) List(ctx context.Context) ([]admin.SystemClient, error) {
	var out []admin.SystemClient
	for _, c := range sc.d.cfg.SystemClients {
		out = append(out, admin.SystemClient{Name: c.Name, Services: c.Services, Source: "config"})
	}
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := systemClientRecords.List(ctx, sc.d.store, "", opts, nil)
		if err != nil {
			return nil, fmt.Errorf("system clients: %w", err)
		}
		for _, it := range page.Items {
			r := it.Value
			out = append(out, admin.SystemClient{Name: r.Name, Services: r.Services, Source: "registered",
				RegisteredBy: r.RegisteredBy, CertificateSerial: r.CertificateSerial})
		}
		if page.Next == "" {
			return out, nil
		}
		opts.Cursor = page.Next
	}
}

// Check validates a registration: the name, and services that this daemon serves and
// that have methods for system clients (a service only phones use, such as AccountService,
// would grant nothing and is refused so that nobody believes it does).
func (sc *systemClients) Check(ctx context.Context, c admin.SystemClient) (admin.SystemClient, error) {
	if !systemNameRE.MatchString(c.Name) {
		return c, admin.Invalid("name: want 1..64 of [A-Za-z0-9._-], the client certificate's common name")
	}
	if c.Name == devpki.CLIClientName {
		return c, admin.Invalid("name: %q is the development CLI's certificate", c.Name)
	}
	for _, s := range sc.d.cfg.SystemClients {
		if s.Name == c.Name {
			return c, admin.Invalid("name: %q is configured in system_clients; change it there", c.Name)
		}
	}
	if len(c.Services) == 0 {
		return c, admin.Invalid("services: list at least one gRPC service")
	}
	known := sc.d.server.GetServiceInfo()
	system := sc.d.systemServices
	for i, s := range c.Services {
		if _, ok := known[s]; !ok || !serviceNameRE.MatchString(s) {
			return c, admin.Invalid("services[%d]: %q is not a hufu service this daemon serves", i, s)
		}
		if !system[s] {
			return c, admin.Invalid("services[%d]: %s has no methods for system clients (only phones call it)", i, s)
		}
	}
	services := slices.Clone(c.Services)
	slices.Sort(services)
	c.Services = slices.Compact(services)
	if _, err := systemClientRecords.Read(ctx, sc.d.store, c.Name); err == nil {
		return c, admin.Conflict("name: %q is already registered; remove it first", c.Name)
	} else if !errors.Is(err, store.ErrNotFound) {
		return c, err
	}
	return c, nil
}

// systemServicesOf is the set of gRPC services that have at least one method the gate opens
// to system clients (authn.System) in policy, the gate's policy (buildServer).
func systemServicesOf(policy authn.Policy) map[string]bool {
	system := map[string]bool{}
	for method, req := range policy {
		if req == authn.System {
			system[method[1:strings.LastIndexByte(method, '/')]] = true
		}
	}
	return system
}

// Register validates and stores a client's permissions (audited in the same batch, with
// inTx, the approval's decision, if any) and, in development, issues its certificate.
func (sc *systemClients) Register(ctx context.Context, c admin.SystemClient, by admin.Actor, inTx func(*store.Tx) error) (*admin.IssuedCertificate, error) {
	c, err := sc.Check(ctx, c)
	if err != nil {
		return nil, err
	}
	services := c.Services
	var issued *admin.IssuedCertificate
	rec := &storepb.SystemClient{Name: c.Name, Services: services, RegisteredUnixNano: sc.d.opts.Clock.Now().UnixNano(), RegisteredBy: by.Name}
	if sc.d.cfg.Development {
		var err error
		if issued, err = sc.issue(c.Name); err != nil {
			return nil, err
		}
		rec.CertificateSerial = issued.Serial
	}
	err = sc.d.store.Update(ctx, func(tx *store.Tx) error {
		if inTx != nil {
			if err := inTx(tx); err != nil {
				return err
			}
		}
		if _, err := systemClientRecords.Get(tx, c.Name); err == nil {
			return admin.Conflict("name: %q is already registered; remove it first", c.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := systemClientRecords.Put(tx, c.Name, rec); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "admin:" + by.Name, Action: "system_client.register", Subject: "y/" + c.Name, Outcome: store.OutcomeOK,
			Details: map[string]string{"role": string(by.Role), "token": by.Name, "services": fmt.Sprint(services),
				"desks": strings.Join(admin.DesksOf(services), ","), "certificate_serial": rec.CertificateSerial}})
	})
	if err != nil {
		return nil, err
	}
	sc.syncFromStore(ctx, c.Name)
	return issued, nil
}

// Remove deletes a registered client's permissions; its certificate stays valid but opens
// nothing (revoke it at the CA as well).
func (sc *systemClients) Remove(ctx context.Context, name string, by admin.Actor) error {
	err := sc.d.store.Update(ctx, func(tx *store.Tx) error {
		if _, err := systemClientRecords.Get(tx, name); errors.Is(err, store.ErrNotFound) {
			return admin.NotFound("no registered system client %q", name)
		} else if err != nil {
			return err
		}
		if err := systemClientRecords.Delete(tx, name); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "admin:" + by.Name, Action: "system_client.remove", Subject: "y/" + name, Outcome: store.OutcomeOK,
			Details: map[string]string{"role": string(by.Role), "token": by.Name}})
	})
	if err != nil {
		return err
	}
	sc.syncFromStore(ctx, name)
	return nil
}

// syncFromStore sets the gate's entry for name to what the store holds now, after a change
// committed. Setting the entry to what this change wrote would race: a registration and a
// removal commit in one order and could update the table in the other, leaving a removed
// client allowed (or a registered one refused) until a restart. Reading the store under mu
// instead, the last sync to run sees the state the last commit left, whatever the order. If
// the store cannot be read, the entry is dropped: a client is refused rather than allowed
// on a guess (the next change or a restart restores it).
func (sc *systemClients) syncFromStore(ctx context.Context, name string) {
	if hook := sc.afterCommit.Load(); hook != nil {
		(*hook)(name)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	rec, err := systemClientRecords.Read(context.WithoutCancel(ctx), sc.d.store, name)
	switch {
	case err == nil:
		sc.registered[name] = serviceSet(rec.Services)
	case errors.Is(err, store.ErrNotFound):
		delete(sc.registered, name)
	default:
		delete(sc.registered, name)
		sc.d.opts.Log.Error("system clients: reading a client back after a change; refusing it until the next change or a restart",
			"client", name, "err", err)
	}
}

// issue makes a client certificate with the development CA of the data directory.
func (sc *systemClients) issue(name string) (*admin.IssuedCertificate, error) {
	ca, caKey, err := devpki.LoadCA(devpki.FilesIn(filepath.Join(sc.d.cfg.DataDir, "tls")))
	if err != nil {
		return nil, fmt.Errorf("system clients: development CA: %w", err)
	}
	dir, err := os.MkdirTemp(sc.d.cfg.DataDir, "issue-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Validity is judged by TLS stacks against their wall clocks, not by the daemon's clock.
	cert, _, err := devpki.IssueClient(certFile, keyFile, name, ca, caKey, time.Now())
	if err != nil {
		return nil, fmt.Errorf("system clients: issue: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	return &admin.IssuedCertificate{Serial: cert.SerialNumber.Text(16), CertificatePEM: string(certPEM), KeyPEM: string(keyPEM)}, nil
}

var serviceNameRE = regexp.MustCompile(`^hufu\.v1\.[A-Z][A-Za-z]*Service$`)
