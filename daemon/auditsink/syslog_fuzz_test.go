package auditsink

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/store"
)

// FuzzSyslogFrameRoundTrip: whatever an audit record holds (the fields come from callers and,
// through them, from users), its frame parses as one RFC 5424 message whose structured data
// and JSON give back the record; nothing in a field can forge another field or frame.
func FuzzSyslogFrameRoundTrip(f *testing.F) {
	f.Add(uint64(1), int64(0), "user:u1", "cosign.sign", "k/abc", "ok", "why", "fine")
	f.Add(uint64(99), int64(1764579600123456789), `a"]\`, "a b", "\xef\xbb\xbf", "denied", "]", `"`)
	f.Add(uint64(1<<63), int64(-1), "", "x\ny", "中文", "failed", "", "")
	f.Fuzz(func(t *testing.T, seq uint64, ns int64, actor, action, subject, outcome, key, value string) {
		for _, s := range []string{actor, action, subject, outcome, key, value} {
			if !utf8.ValidString(s) {
				t.Skip() // the store only holds what it could hash and export as UTF-8 JSON
			}
		}
		r := &store.Record{Seq: seq, Time: ns, Actor: actor, Action: action, Subject: subject, Outcome: outcome,
			Details: map[string]string{key: value}}
		for i := range r.Hash {
			r.Hash[i] = byte(seq) + byte(i)
		}
		frame, err := appendSyslogFrame([]byte("garbage before"), r, "hufu-1", "42")
		if err != nil {
			t.Fatal(err)
		}
		frame = frame[len("garbage before"):]
		br := bufio.NewReader(bytes.NewReader(frame))
		body, err := readFrame(br)
		if err != nil {
			t.Fatalf("frame %q: %v", frame, err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("frame length leaves %d bytes over", br.Buffered())
		}
		m, err := parse5424(body)
		if err != nil {
			t.Fatalf("message %q: %v", body, err)
		}
		sd := m.SD[SDID]
		if sd["seq"] != strconv.FormatUint(seq, 10) || sd["hash"] != hex.EncodeToString(r.Hash[:]) || len(m.SD) != 1 {
			t.Fatalf("structured data %v", m.SD)
		}
		if !m.Timestamp.Equal(time.Unix(0, ns).Truncate(time.Microsecond)) && !m.Timestamp.Equal(time.Unix(0, ns-ns%1000)) {
			t.Fatalf("timestamp %s for %d ns", m.Timestamp, ns)
		}
		if want := "-"; msgIDRE.MatchString(action) {
			if m.MsgID != action {
				t.Fatalf("MSGID %q, want the action %q", m.MsgID, action)
			}
		} else if m.MsgID != want {
			t.Fatalf("MSGID %q for action %q, want -", m.MsgID, action)
		}
		var got struct {
			Seq                             uint64
			Actor, Action, Subject, Outcome string
			Details                         map[string]string
		}
		if err := json.Unmarshal(m.Msg, &got); err != nil {
			t.Fatalf("MSG %q: %v", m.Msg, err)
		}
		if got.Seq != seq || got.Actor != actor || got.Action != action || got.Subject != subject ||
			got.Outcome != outcome || got.Details[key] != value {
			t.Fatalf("MSG gives back %+v", got)
		}
	})
}
