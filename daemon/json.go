package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hufu-hsm/hufu/api/openapi"
	"github.com/hufu-hsm/hufu/daemon/gateway"
	"google.golang.org/grpc/credentials"
)

// The JSON/HTTP gateway (listen.json; package gateway): an HTTPS listener whose calls reach
// d.server through an in-memory listener, as gRPC calls carrying the HTTPS connection's
// verified TLS state, so they pass the one gate like any other.
type jsonSurface struct {
	gateway  *gateway.Gateway
	server   *http.Server
	listener net.Listener
	done     chan error
}

// buildJSON makes the gateway if listen.json is set; buildServer then gives the gRPC
// server the gateway's credentials.
func (d *Daemon) buildJSON() error {
	if d.cfg.Listen.JSON == "" {
		return nil
	}
	gw, err := gateway.New(gateway.Options{
		Log: d.opts.Log, OpenAPI: openapi.Document,
		// A request's JSON is larger than its protobuf (bytes travel as base64).
		MaxBodyBytes:     2 * int64(d.cfg.GRPC.MaxRecvBytes),
		MaxResponseBytes: d.cfg.GRPC.MaxRecvBytes,
	})
	if err != nil {
		return err
	}
	d.json.gateway = gw
	d.json.server = gw.Server()
	return nil
}

// serverCredentials are the gRPC server's transport credentials: TLS, and the gateway's
// pipe connections when the gateway is served.
func (d *Daemon) serverCredentials() credentials.TransportCredentials {
	creds := credentials.NewTLS(d.tls.config())
	if d.json.gateway == nil {
		return creds
	}
	return gateway.Credentials(creds)
}

func (d *Daemon) listenJSON() error {
	if d.json.gateway == nil || d.json.listener != nil {
		return nil
	}
	l, err := net.Listen("tcp", d.cfg.Listen.JSON)
	if err != nil {
		return fmt.Errorf("JSON listener (listen.json %s): %w", d.cfg.Listen.JSON, err)
	}
	d.json.listener = tls.NewListener(l, d.tls.configFor("h2", "http/1.1"))
	return nil
}

// JSONAddr is the JSON gateway's address (after Listen), or nil when it is off.
func (d *Daemon) JSONAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.json.listener == nil {
		return nil
	}
	return d.json.listener.Addr()
}

// serveJSON serves the gateway: the gRPC server on the in-memory listener, HTTPS on the
// JSON listener.
func (d *Daemon) serveJSON() error {
	if d.json.gateway == nil {
		return nil
	}
	d.mu.Lock()
	err := d.listenJSON()
	l := d.json.listener
	d.mu.Unlock()
	if err != nil {
		return err
	}
	go func() { _ = d.server.Serve(d.json.gateway.Listener()) }()
	d.json.done = make(chan error, 1)
	go func() {
		err := d.json.server.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		} else if err != nil {
			d.opts.Log.Error("JSON gateway stopped", "err", err)
		}
		d.json.done <- err
	}()
	d.opts.Log.Info("JSON gateway", "addr", l.Addr().String(), "openapi", "/openapi.json")
	return nil
}

// stopJSON stops taking JSON calls and waits up to grace for those in flight (a stream
// being watched ends when the gRPC server stops it); then the rest are cut.
func (d *Daemon) stopJSON(grace time.Duration) {
	if d.json.server == nil || d.json.done == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.json.server.Shutdown(ctx); err != nil {
		_ = d.json.server.Close()
	}
	<-d.json.done
	d.json.done = nil
	d.json.gateway.Close()
}
