package auditsink

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syslogMessage is one parsed RFC 5424 message as a SIEM would see it.
type syslogMessage struct {
	PRI       int
	Timestamp time.Time
	Hostname  string
	AppName   string
	ProcID    string
	MsgID     string
	SD        map[string]map[string]string // SD-ID -> param -> value
	Msg       []byte                       // without the BOM
}

// maxFrame bounds one frame, as a receiver must (docs/operations.md asks receivers for
// 64 KiB: an audit record's fields hold up to 12 KiB of text before JSON escaping).
const maxFrame = 64 << 10

// readFrame reads one octet-counted frame (RFC 6587 §3.4.1): LEN SP MSG.
func readFrame(br *bufio.Reader) ([]byte, error) {
	var n int
	for digits := 0; ; digits++ {
		c, err := br.ReadByte()
		if err != nil {
			if digits == 0 && errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("frame length: %w", err)
		}
		if c == ' ' && digits > 0 {
			break
		}
		if c < '0' || c > '9' || digits >= 6 || (digits == 0 && c == '0') {
			return nil, fmt.Errorf("frame length: unexpected byte %q", c)
		}
		n = n*10 + int(c-'0')
	}
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, fmt.Errorf("frame body: %w", err)
	}
	return b, nil
}

// parse5424 parses an RFC 5424 message strictly enough to catch any formatting slip.
func parse5424(b []byte) (*syslogMessage, error) {
	m := &syslogMessage{SD: map[string]map[string]string{}}
	if len(b) < 1 || b[0] != '<' {
		return nil, errors.New("no PRI")
	}
	end := bytes.IndexByte(b, '>')
	if end < 2 || end > 4 {
		return nil, errors.New("bad PRI")
	}
	pri, err := strconv.Atoi(string(b[1:end]))
	if err != nil || pri > 191 {
		return nil, errors.New("bad PRI value")
	}
	m.PRI = pri
	rest := b[end+1:]
	if !bytes.HasPrefix(rest, []byte("1 ")) {
		return nil, errors.New("not version 1")
	}
	rest = rest[2:]
	fields := make([]string, 5)
	for i := range fields {
		sp := bytes.IndexByte(rest, ' ')
		if sp < 1 {
			return nil, fmt.Errorf("header field %d missing", i)
		}
		fields[i] = string(rest[:sp])
		for _, c := range rest[:sp] {
			if c < '!' || c > '~' {
				return nil, fmt.Errorf("header field %d has byte %q", i, c)
			}
		}
		rest = rest[sp+1:]
	}
	if m.Timestamp, err = time.Parse(time.RFC3339Nano, fields[0]); err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	if len(fields[2]) > 48 || len(fields[3]) > 128 || len(fields[4]) > 32 {
		return nil, errors.New("header field too long")
	}
	m.Hostname, m.AppName, m.ProcID, m.MsgID = fields[1], fields[2], fields[3], fields[4]
	if len(rest) > 0 && rest[0] == '-' {
		rest = rest[1:]
	} else {
		for len(rest) > 0 && rest[0] == '[' {
			if rest, err = parseSDElement(rest[1:], m.SD); err != nil {
				return nil, err
			}
		}
		if len(m.SD) == 0 {
			return nil, errors.New("no structured data")
		}
	}
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return nil, errors.New("no space before MSG")
		}
		m.Msg = bytes.TrimPrefix(rest[1:], []byte("\xef\xbb\xbf"))
	}
	return m, nil
}

// parseSDElement parses `SD-ID *(SP name="value")]` and returns what follows.
func parseSDElement(b []byte, into map[string]map[string]string) ([]byte, error) {
	name := func() (string, error) {
		i := 0
		for i < len(b) && b[i] > ' ' && b[i] <= '~' && b[i] != '=' && b[i] != ']' && b[i] != '"' {
			i++
		}
		if i == 0 || i > 32 {
			return "", errors.New("bad SD name")
		}
		s := string(b[:i])
		b = b[i:]
		return s, nil
	}
	id, err := name()
	if err != nil {
		return nil, err
	}
	if _, dup := into[id]; dup {
		return nil, errors.New("SD-ID twice")
	}
	params := map[string]string{}
	into[id] = params
	for {
		if len(b) == 0 {
			return nil, errors.New("unterminated SD element")
		}
		if b[0] == ']' {
			return b[1:], nil
		}
		if b[0] != ' ' {
			return nil, errors.New("no space before SD param")
		}
		b = b[1:]
		p, err := name()
		if err != nil {
			return nil, err
		}
		if !bytes.HasPrefix(b, []byte(`="`)) {
			return nil, errors.New("bad SD param")
		}
		b = b[2:]
		var v []byte
		for {
			if len(b) == 0 {
				return nil, errors.New("unterminated SD value")
			}
			c := b[0]
			b = b[1:]
			if c == '"' {
				break
			}
			if c == '\\' && len(b) > 0 && (b[0] == '"' || b[0] == '\\' || b[0] == ']') {
				c, b = b[0], b[1:]
			} else if c == ']' {
				return nil, errors.New("unescaped ] in SD value")
			}
			v = append(v, c)
		}
		params[p] = string(v)
	}
}

// syslogReceiver is a real RFC 5425 receiver on loopback: TLS, octet counting, RFC 5424
// parsing. It keeps every message it receives, duplicates included, in arrival order.
type syslogReceiver struct {
	t    *testing.T
	tls  *tls.Config
	ln   net.Listener
	addr string

	// closeAfter, when positive, makes the next connection hang up after that many
	// messages without reading what the sender wrote after them: a receiver that crashes
	// with data in its socket buffer.
	closeAfter atomic.Int64
	// handshakeErrs counts TLS handshakes that failed.
	handshakeErrs atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
	msgs  []*syslogMessage
	errs  []error
	wg    sync.WaitGroup
	more  chan struct{} // signalled on every message
}

func startReceiver(t *testing.T, addr string, conf *tls.Config) *syslogReceiver {
	t.Helper()
	r := &syslogReceiver{t: t, tls: conf, conns: map[net.Conn]bool{}, more: make(chan struct{}, 1)}
	r.listen(addr)
	t.Cleanup(r.stop)
	return r
}

func (r *syslogReceiver) listen(addr string) {
	r.t.Helper()
	ln, err := tls.Listen("tcp", addr, r.tls)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.ln, r.addr = ln, ln.Addr().String()
	r.mu.Unlock()
	r.wg.Add(1)
	go r.accept(ln)
}

func (r *syslogReceiver) accept(ln net.Listener) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		limit := r.closeAfter.Swap(0)
		r.wg.Add(1)
		go r.serve(c, limit)
	}
}

func (r *syslogReceiver) serve(c net.Conn, limit int64) {
	defer r.wg.Done()
	defer func() {
		c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	if err := c.(*tls.Conn).Handshake(); err != nil {
		r.handshakeErrs.Add(1) // an untrusted client, or a client that does not trust us
		return
	}
	br := bufio.NewReader(c)
	for n := int64(0); limit == 0 || n < limit; n++ {
		b, err := readFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.record(nil, err)
			}
			return
		}
		m, err := parse5424(b)
		r.record(m, err)
	}
	// Hang up with unread data: TCP resets the connection and the sender's bytes are gone.
	if tc, ok := c.(*tls.Conn); ok {
		if nc, ok := tc.NetConn().(*net.TCPConn); ok {
			_ = nc.SetLinger(0)
		}
	}
}

func (r *syslogReceiver) record(m *syslogMessage, err error) {
	r.mu.Lock()
	if err != nil {
		r.errs = append(r.errs, err)
	} else {
		r.msgs = append(r.msgs, m)
	}
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// stop closes the listener and every connection, as a restarting receiver does.
func (r *syslogReceiver) stop() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// restart listens again on the same address.
func (r *syslogReceiver) restart() {
	r.t.Helper()
	r.listen(r.addr)
}

// messages returns what arrived so far and fails the test on any malformed frame.
func (r *syslogReceiver) messages() []*syslogMessage {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		r.t.Errorf("receiver: %v", err)
	}
	r.errs = nil
	return append([]*syslogMessage(nil), r.msgs...)
}

// waitForSeq waits until a message with sequence number seq has arrived.
func (r *syslogReceiver) waitForSeq(seq uint64) []*syslogMessage {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	want := strconv.FormatUint(seq, 10)
	for {
		msgs := r.messages()
		for _, m := range msgs {
			if m.SD[SDID]["seq"] == want {
				return msgs
			}
		}
		select {
		case <-r.more:
		case <-deadline:
			r.t.Fatalf("record %d never arrived; got %d messages", seq, len(msgs))
		}
	}
}
