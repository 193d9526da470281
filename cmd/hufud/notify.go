package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state ("READY=1", "STOPPING=1", ...) to systemd's notification socket
// (sd_notify(3)) when the service runs with Type=notify; without NOTIFY_SOCKET it does
// nothing. The protocol is one datagram on a unix socket; a leading '@' names an abstract
// socket.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// watchdog keeps systemd's watchdog (WatchdogSec=, which sets WATCHDOG_USEC) fed with
// WATCHDOG=1 every half period while the appliance is healthy (check: the HSM and the
// store). When they stay unhealthy for a whole period, systemd restarts hufud: a PKCS#11
// module that lost its sessions or keys, or a store in the failed state, does not recover
// inside a running process, and a fresh one comes back as soon as the HSM does. Without
// WATCHDOG_USEC (or when it is meant for another process) watchdog returns at once.
func watchdog(ctx context.Context, check func(context.Context) error, log *slog.Logger) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	every := time.Duration(usec) * time.Microsecond / 2
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		probe, cancel := context.WithTimeout(ctx, every)
		err := check(probe)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("unhealthy: not feeding the systemd watchdog", "err", err)
			continue
		}
		if err := sdNotify("WATCHDOG=1"); err != nil {
			log.Warn("systemd watchdog notification failed", "err", err)
		}
	}
}
