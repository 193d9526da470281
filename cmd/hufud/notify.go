package main

import (
	"fmt"
	"net"
	"os"
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
