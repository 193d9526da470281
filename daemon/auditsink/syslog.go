package auditsink

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// The syslog wire format (RFC 5424 messages, RFC 5425 transport over TLS, octet-counting
// framing of RFC 6587 §3.4.1). One frame per audit record:
//
//	LEN SP "<" PRI ">1" SP TIMESTAMP SP HOSTNAME SP "hufud" SP PROCID SP MSGID SP
//	    "[hufu@32473 seq=" DQ seq DQ " hash=" DQ hex h_seq DQ "]" SP BOM JSON
//
// LEN is the number of bytes of the message that follows the space, in decimal. PRI is
// facility 13 (log audit) times 8 plus severity: 6 (informational) for outcome "ok", 5
// (notice) for any other outcome (denied, failed, ...). TIMESTAMP is the record's time in
// UTC with microseconds (RFC 5424 allows no more). PROCID is hufud's process id; MSGID is the
// record's action when it is 1..32 printable ASCII characters, "-" otherwise (the action is
// always in the JSON). The structured-data element carries the record's sequence number and
// chain hash, the deduplication key; 32473 is the private enterprise number reserved for
// documentation (RFC 5612), as hufu has none of its own, and receivers match on the SD-ID
// "hufu@32473". The message is a UTF-8 byte order mark followed by the record exactly as an
// audit export writes it (store.AuditRecordJSON).

const (
	syslogFacilityAudit = 13
	syslogInfo          = 6
	syslogNotice        = 5
	syslogAppName       = "hufud"
	// SDID is the structured-data id of the element that carries seq and hash.
	SDID = "hufu@32473"
)

// syslogBOM starts a MSG that is UTF-8 (RFC 5424 §6.4).
const syslogBOM = "\xef\xbb\xbf"

// msgIDRE and hostnameRE are RFC 5424's MSGID and HOSTNAME: printable US-ASCII, 1..32 and
// 1..255 characters.
var (
	msgIDRE    = regexp.MustCompile(`^[!-~]{1,32}$`)
	hostnameRE = regexp.MustCompile(`^[!-~]{1,255}$`)
)

// SyslogOptions configure a syslog sink's connection.
type SyslogOptions struct {
	Address    string // host:port
	CAFile     string // CAs of the receiver's certificate; required
	CertFile   string // optional client certificate
	KeyFile    string
	ServerName string // default: the host of Address
	Hostname   string // the HOSTNAME field; default os.Hostname()
	// Timeout bounds connecting and writing one batch.
	Timeout time.Duration
	// Replay is how many records written on a connection that broke are sent again.
	Replay int
}

type syslogTransport struct {
	addr     string
	tls      *tls.Config
	timeout  time.Duration
	replayN  int
	hostname string
	procID   string

	conn  *tls.Conn
	bw    *bufio.Writer
	gone  chan struct{} // closed by the connection's reader when the receiver goes away
	frame []byte
}

func newSyslogTransport(o SyslogOptions) (*syslogTransport, error) {
	host, _, err := net.SplitHostPort(o.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", o.Address, err)
	}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
	}
	conf := &tls.Config{RootCAs: roots, ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
	if conf.ServerName == "" {
		conf.ServerName = host
	}
	if o.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	if o.Timeout <= 0 {
		return nil, errors.New("syslog: Timeout must be positive")
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	if !hostnameRE.MatchString(hostname) {
		hostname = "-"
	}
	return &syslogTransport{
		addr: o.Address, tls: conf, timeout: o.Timeout, replayN: max(o.Replay, 0),
		hostname: hostname, procID: strconv.Itoa(os.Getpid()),
	}, nil
}

func (t *syslogTransport) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: t.timeout}, Config: t.tls}
	c, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return err
	}
	t.conn = c.(*tls.Conn)
	t.bw = bufio.NewWriterSize(t.conn, 64<<10)
	gone := make(chan struct{})
	t.gone = gone
	// Receivers never send anything: a read that returns means the receiver closed the
	// connection or it broke, which a writer would only learn at its next write (and TCP
	// may have swallowed that one).
	go func(c *tls.Conn) {
		_, _ = io.Copy(io.Discard, c)
		close(gone)
	}(t.conn)
	return nil
}

func (t *syslogTransport) write(recs []*store.Record) error {
	if err := t.conn.SetWriteDeadline(time.Now().Add(t.timeout)); err != nil {
		return err
	}
	for _, r := range recs {
		var err error
		if t.frame, err = appendSyslogFrame(t.frame[:0], r, t.hostname, t.procID); err != nil {
			return err
		}
		if _, err := t.bw.Write(t.frame); err != nil {
			return err
		}
	}
	return t.bw.Flush()
}

func (t *syslogTransport) lost() <-chan struct{} { return t.gone }

func (t *syslogTransport) replay() int { return t.replayN }

func (t *syslogTransport) close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn, t.bw, t.gone = nil, nil, nil
	return err
}

// appendSyslogFrame appends r as one octet-counted RFC 5424 frame (format above).
func appendSyslogFrame(b []byte, r *store.Record, hostname, procID string) ([]byte, error) {
	body, err := store.AuditRecordJSON(r)
	if err != nil {
		return b, err
	}
	sev := syslogNotice
	if r.Outcome == store.OutcomeOK {
		sev = syslogInfo
	}
	msgID := "-"
	if msgIDRE.MatchString(r.Action) {
		msgID = r.Action
	}
	var hdr []byte
	hdr = append(hdr, '<')
	hdr = strconv.AppendInt(hdr, int64(syslogFacilityAudit*8+sev), 10)
	hdr = append(hdr, ">1 "...)
	hdr = time.Unix(0, r.Time).UTC().AppendFormat(hdr, "2006-01-02T15:04:05.000000Z07:00")
	hdr = append(hdr, ' ')
	hdr = append(hdr, hostname...)
	hdr = append(hdr, ' ')
	hdr = append(hdr, syslogAppName...)
	hdr = append(hdr, ' ')
	hdr = append(hdr, procID...)
	hdr = append(hdr, ' ')
	hdr = append(hdr, msgID...)
	hdr = append(hdr, " ["+SDID+` seq="`...)
	hdr = strconv.AppendUint(hdr, r.Seq, 10)
	hdr = append(hdr, `" hash="`...)
	hdr = hex.AppendEncode(hdr, r.Hash[:])
	hdr = append(hdr, `"] `+syslogBOM...)
	b = strconv.AppendInt(b, int64(len(hdr)+len(body)), 10)
	b = append(b, ' ')
	b = append(b, hdr...)
	return append(b, body...), nil
}
