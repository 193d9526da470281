package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/pki"
)

// The daemon's side of the public PKI listener (package pki): the embedded CAs it
// publishes, its listener (listen.pki, off when empty), and its lifetime inside Serve.

type pkiSurface struct {
	cas      map[string]*ca.Embedded // the embedded CAs, by id (buildCertificates)
	server   *pki.Server
	mu       sync.Mutex
	listener net.Listener
	done     chan error
}

// addEmbeddedCA records an embedded CA for the listener and the CRL metrics.
func (d *Daemon) addEmbeddedCA(e *ca.Embedded) {
	if d.pki.cas == nil {
		d.pki.cas = map[string]*ca.Embedded{}
	}
	d.pki.cas[e.ID()] = e
}

// SetOCSP mounts an OCSP responder on the PKI listener's /ocsp/{ca} routes; call it after
// Open and before Serve. It finds the CA with r.PathValue("ca") (an embedded CA's id:
// EmbeddedCA returns it) and a GET request with r.PathValue("request").
// Without listen.pki it does nothing.
func (d *Daemon) SetOCSP(h http.Handler) {
	if d.pki.server != nil {
		d.pki.server.SetOCSP(h)
	}
}

// EmbeddedCA returns the configured embedded CA id, or nil.
func (d *Daemon) EmbeddedCA(id string) *ca.Embedded { return d.pki.cas[id] }

func (d *Daemon) buildPKI() error {
	if d.cfg.Listen.PKI == "" {
		return nil
	}
	authorities := map[string]pki.Authority{}
	for id, e := range d.pki.cas {
		chain, err := e.Chain(context.Background())
		if err != nil {
			return err
		}
		authorities[id] = pki.Authority{IssuingDER: chain[0], RootDER: chain[1], CRL: func(ctx context.Context, level string) (pki.CRL, error) {
			c, err := e.CRLAt(ctx, ca.Level(level))
			return pki.CRL{DER: c.DER, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate}, err
		}}
	}
	s, err := pki.New(pki.Options{Authorities: authorities, Registerer: d.opts.Registry,
		Log: d.opts.Log.With("surface", "pki"), Clock: d.opts.Clock})
	if err != nil {
		return err
	}
	d.pki.server = s
	if d.cfg.Certificates.OCSP {
		responder, err := d.ocspResponder()
		if err != nil {
			return err
		}
		d.SetOCSP(responder)
	}
	return nil
}

func (d *Daemon) listenPKI() error {
	if d.pki.server == nil {
		return nil
	}
	l, err := net.Listen("tcp", d.cfg.Listen.PKI)
	if err != nil {
		return fmt.Errorf("PKI listener (listen.pki %s): %w", d.cfg.Listen.PKI, err)
	}
	d.pki.mu.Lock()
	d.pki.listener = l
	d.pki.mu.Unlock()
	return nil
}

// PKIAddr is the PKI listener's address (after Listen), or nil.
func (d *Daemon) PKIAddr() net.Addr {
	d.pki.mu.Lock()
	defer d.pki.mu.Unlock()
	if d.pki.listener == nil {
		return nil
	}
	return d.pki.listener.Addr()
}

// servePKI serves the PKI listener (binding it if Listen was not called). Like the admin
// surface, a listener failing later is logged and does not stop the appliance.
func (d *Daemon) servePKI() error {
	if d.pki.server == nil {
		return nil
	}
	d.pki.mu.Lock()
	l := d.pki.listener
	d.pki.mu.Unlock()
	if l == nil {
		if err := d.listenPKI(); err != nil {
			return err
		}
		l = d.pki.listener
	}
	d.pki.done = make(chan error, 1)
	s := d.pki.server
	go func() {
		err := s.Serve(l)
		if err != nil {
			d.opts.Log.Error("PKI listener stopped", "err", err)
		}
		d.pki.done <- err
	}()
	d.opts.Log.Info("PKI listener", "addr", l.Addr().String(), "cas", len(d.pki.cas))
	return nil
}

// closePKI stops the PKI listener before the store and the keyring close.
func (d *Daemon) closePKI(ctx context.Context) {
	if d.pki.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.GRPC.ShutdownGrace.Std())
	defer cancel()
	if err := d.pki.server.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		d.opts.Log.Error("closing the PKI listener", "err", err)
	}
	if d.pki.done != nil {
		select {
		case <-d.pki.done:
		case <-time.After(time.Second):
		}
		d.pki.done = nil
	}
	d.pki.mu.Lock()
	if d.pki.listener != nil {
		_ = d.pki.listener.Close()
		d.pki.listener = nil
	}
	d.pki.mu.Unlock()
}
