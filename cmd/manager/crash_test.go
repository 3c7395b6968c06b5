package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// The crash tests hold a conversation between an emulated contact (its
// phone and its companion, in the `manager emulator` process) and one
// account of `manager run`, and kill -9 the manager in the middle of it:
// with the embedded store, a restart on the same data; in a fleet, the
// other instance taking the account over. Every message the contact sent
// must come out of the event stream, and the Signal sessions must go on
// as they were: no decrypt failure on either side, no new pkmsg.

// crashPatience bounds each wait of the crash tests: it only stops a hung
// test on a loaded machine.
const crashPatience = 45 * time.Second

// sendLimits lifts the account's send rate above what the tests send.
const sendLimits = "messages:\n  send_per_minute: 600\n  send_burst: 50\n"

func TestKill9MidConversationLosesNoMessage(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)

	listen := freeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  url: %s\n  root_public_key: %s\n", emu.url, emu.rootKey)
	fmt.Fprintf(&b, "client:\n  version_url: %s/sw.js\n", emu.controlURL)
	fmt.Fprintf(&b, "store:\n  path: %s\nhttp:\n  listen: %s\nlog:\n  level: info\n", filepath.Join(dir, "data", "wafleet.db"), listen)
	b.WriteString("connect:\n  rate: 100\n  backoff_initial: 100ms\n  backoff_max: 1s\n" + sendLimits + "accounts:\n  - id: talker\n")
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	mgr := runInstance(t, bin, dir, "manager", listen, cfgPath)
	dumpLogsOnFailure(t, dir)
	account := pairOne(t, mgr, emu, "talker")
	api := "http://" + listen

	stream := followMessages(t, func() string { return api })
	conv := startConversation(t, emu, stream, account)
	conv.warmUp(t, api, "talker")

	// The contact keeps sending; the account sends too: one message that
	// arrives before the kill (it must not come again after it), one with
	// an idempotency key just before the kill.
	sender := conv.keepSending(t)
	sender.waitSent(t, 10)
	before := conv.accountSend(t, api, "talker", "before the kill", "")
	conv.waitReceived(t, before, "before the kill")
	keyID := conv.accountSend(t, api, "talker", "exactly once", "crash-key")
	sender.waitSent(t, sender.count()+10)
	if err := mgr.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-mgr.done
	t.Logf("killed the manager after the contact sent %d messages, %d of them seen as events", sender.count(), stream.count())
	sender.waitSent(t, sender.count()+10) // some while it is down

	mgr = runInstance(t, bin, dir, "manager", listen, cfgPath)
	waitConnected(t, mgr, "talker")
	sender.waitSent(t, sender.count()+10) // and some after
	sent := sender.stop(t)
	conv.checkDelivered(t, sent)

	// The key was stored before the 202: the repeat sends nothing and
	// names the first message. That one was sent at most once: when the
	// kill came between the key and the send, it was never sent (the key
	// is spent; README, "Sending messages").
	if id, dup := conv.accountSendKeyed(t, api, "talker", "exactly once", "crash-key"); !dup || id != keyID {
		t.Fatalf("the repeat of a keyed send answered id %s duplicate %v, want the first id %s", id, dup, keyID)
	}
	conv.steadyAfter(t, api, "talker")
	conv.checkOnce(t, "exactly once", keyID)
	conv.checkOnce(t, "before the kill", before)
	conv.checkNoRekey(t)

	if err := mgr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-mgr.done; err != nil {
		t.Errorf("manager exited with %v", err)
	}
}

func TestFleetFailoverMidConversationKeepsSessions(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	rs := redistest.Start(t, redistest.Config{})
	instances := []*instance{
		startInstance(t, bin, dir, "inst-1", emu, oneRedis(rs.Addr()), 1, sendLimits),
		startInstance(t, bin, dir, "inst-2", emu, oneRedis(rs.Addr()), 1, sendLimits),
	}
	dumpLogsOnFailure(t, dir)
	stopWatch := watchDoubles(t, emu)
	defer stopWatch()
	const id = "acct-000"
	view := waitFleet(t, instances, emu, 1, true, crashPatience)
	owner, other := instances[0], instances[1]
	if view.connected[id] != owner.name {
		owner, other = other, owner
	}
	account := accountPhone(t, owner, id)

	// The fleet-wide event stream, read from the instance that stays.
	stream := followMessages(t, func() string { return "http://" + other.listen })
	conv := startConversation(t, emu, stream, account)
	conv.warmUp(t, "http://"+owner.listen, id)

	sender := conv.keepSending(t)
	sender.waitSent(t, 10)
	before := conv.accountSend(t, "http://"+owner.listen, id, "before the failover", "")
	conv.waitReceived(t, before, "before the failover")
	sender.waitSent(t, sender.count()+10)
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-owner.done
	killedAt := time.Now()
	t.Logf("killed the owner %s after the contact sent %d messages, %d of them seen as events", owner.name, sender.count(), stream.count())
	waitConnected(t, other, id)
	t.Logf("%s took the account over %s after the kill", other.name, time.Since(killedAt).Round(time.Millisecond))
	sender.waitSent(t, sender.count()+10)
	sent := sender.stop(t)
	conv.checkDelivered(t, sent)

	// The new owner sends on the sessions the old one made.
	conv.steadyAfter(t, "http://"+other.listen, id)
	conv.checkOnce(t, "before the failover", before)
	conv.checkNoRekey(t)
	if st := emu.stats(t); st.Pairings != 1 || st.MaxConnectionsPerDevice > 1 {
		t.Fatalf("pairings %d, max_connections_per_device %d: want 1 and 1", st.Pairings, st.MaxConnectionsPerDevice)
	}
}

// dumpLogsOnFailure prints the managers' logs of dir when the test fails.
func dumpLogsOnFailure(t *testing.T, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", filepath.Base(l), b[max(0, len(b)-20000):])
		}
	})
}

// pairOne waits for the account's QR code, scans it (one successful scan
// only) and waits until it is connected; it returns the account's phone
// number.
func pairOne(t *testing.T, inst *instance, emu *emulatorProcess, id string) string {
	t.Helper()
	deadline := time.Now().Add(crashPatience)
	tried, linked := map[string]bool{}, false
	for {
		for _, v := range inst.fleetAccounts() {
			switch {
			case v.ID != id:
			case v.State == "connected" && v.JID != "":
				return accountPhone(t, inst, id)
			case v.QR != nil && !linked && !tried[*v.QR]:
				tried[*v.QR] = true
				linked = emu.scan(*v.QR) == nil
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not connected within %s", id, crashPatience)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// accountPhone is the phone number of a connected account.
func accountPhone(t *testing.T, inst *instance, id string) string {
	t.Helper()
	for _, v := range inst.fleetAccounts() {
		if v.ID == id && v.JID != "" {
			user, _, _ := strings.Cut(v.JID, "@")
			phone, _, _ := strings.Cut(user, ":")
			return phone
		}
	}
	t.Fatalf("%s has no JID on %s", id, inst.name)
	return ""
}

// waitConnected waits until the account is connected on inst (run by it,
// in a fleet).
func waitConnected(t *testing.T, inst *instance, id string) {
	t.Helper()
	deadline := time.Now().Add(crashPatience)
	for {
		for _, v := range inst.fleetAccounts() {
			if v.ID == id && v.State == "connected" && (v.Instance == "" || v.Instance == inst.name) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not connected on %s within %s", id, inst.name, crashPatience)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// messageStream follows GET /api/events from the first event on, resuming
// after the last id it saw whenever the stream ends (the instance died,
// restarted, or another one answers), and records the message events.
type messageStream struct {
	mu     sync.Mutex
	last   string
	seen   map[string]int    // message id → events with it
	texts  map[string]string // message id → its text
	missed []string          // the reasons of "missed" events
}

func followMessages(t *testing.T, base func() string) *messageStream {
	ms := &messageStream{last: "0", seen: map[string]int{}, texts: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			ms.follow(ctx, base())
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if len(ms.missed) > 0 {
			t.Errorf("the event stream skipped events: %v", ms.missed)
		}
	})
	return ms
}

// follow reads one stream until it ends.
func (ms *messageStream) follow(ctx context.Context, base string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/events", nil)
	if err != nil {
		return
	}
	ms.mu.Lock()
	req.Header.Set("Last-Event-ID", ms.last)
	ms.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var id, kind, data string
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == "":
			if id != "" {
				ms.add(id, kind, data)
			}
			id, kind, data = "", "", ""
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			kind = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

func (ms *messageStream) add(id, kind, data string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.last = id
	if kind == "missed" {
		ms.missed = append(ms.missed, data)
		return
	}
	var w events.Wire
	if json.Unmarshal([]byte(data), &w) != nil || w.Kind != events.KindMessage || w.Message == nil {
		return
	}
	ms.seen[w.Message.ID]++
	ms.texts[w.Message.ID] = w.Message.Text
}

// count is the number of distinct messages seen.
func (ms *messageStream) count() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.seen)
}

// waitFor waits until every id in ids has come as a message event with
// its text, and returns how many events came for them.
func (ms *messageStream) waitFor(t *testing.T, what string, want map[string]string) int {
	t.Helper()
	deadline := time.Now().Add(crashPatience)
	for {
		ms.mu.Lock()
		var missing []string
		n := 0
		for id, text := range want {
			switch {
			case ms.seen[id] == 0:
				missing = append(missing, id)
			case ms.texts[id] != text:
				ms.mu.Unlock()
				t.Fatalf("message %s came with text %q, want %q", id, ms.texts[id], text)
			}
			n += ms.seen[id]
		}
		ms.mu.Unlock()
		if len(missing) == 0 {
			return n
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			t.Fatalf("%s: %d of %d messages never came as events within %s: %v", what, len(missing), len(want), crashPatience, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// conversation is an emulated contact talking with one account.
type conversation struct {
	emu      *emulatorProcess
	stream   *messageStream
	contact  string // the contact's phone number
	account  string // the account's
	baseline emulator.Traffic
}

func startConversation(t *testing.T, emu *emulatorProcess, stream *messageStream, account string) *conversation {
	t.Helper()
	var c emulator.ContactInfo
	emu.call(t, http.MethodPost, "/contacts", "", &c)
	phone, _, _ := strings.Cut(c.JID, "@")
	return &conversation{emu: emu, stream: stream, contact: phone, account: account}
}

// call makes a control request of the emulator, failing the test unless
// it answers 200, and decodes the answer into out.
func (e *emulatorProcess) call(t *testing.T, method, path, body string, out any) {
	t.Helper()
	if err := e.try(method, path, body, out); err != nil {
		t.Fatal(err)
	}
}

func (e *emulatorProcess) try(method, path, body string, out any) error {
	req, err := http.NewRequest(method, e.controlURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("emulator %s %s: %s: %s", method, path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// contactSend makes the contact's device (0: its phone, 1: its companion)
// send text to the account; it returns the message id.
func (c *conversation) contactSend(device int, text string) (string, error) {
	body, _ := json.Marshal(map[string]string{"from": fmt.Sprintf("%s:%d@s.whatsapp.net", c.contact, device), "to": c.account, "text": text})
	var sent emulator.SentMessage
	if err := c.emu.try(http.MethodPost, "/contacts/send", string(body), &sent); err != nil {
		return "", err
	}
	return sent.ID, nil
}

// info is the contact as GET /contacts shows it.
func (c *conversation) info(t *testing.T) emulator.ContactInfo {
	t.Helper()
	var infos []emulator.ContactInfo
	c.emu.call(t, http.MethodGet, "/contacts", "", &infos)
	for _, i := range infos {
		if strings.HasPrefix(i.JID, c.contact+"@") {
			return i
		}
	}
	t.Fatalf("contact %s not in GET /contacts", c.contact)
	return emulator.ContactInfo{}
}

// received is what the contact's devices decrypted from the account.
func (c *conversation) received(t *testing.T) []emulator.ReceivedInfo {
	t.Helper()
	var out []emulator.ReceivedInfo
	c.emu.call(t, http.MethodGet, "/contacts/received?contact="+c.contact, "", &out)
	return out
}

// accountSendKeyed sends text to the contact through the account's API
// (retrying while the account is not connected yet); it returns the
// message id and whether the answer named an earlier message.
func (c *conversation) accountSendKeyed(t *testing.T, api, id, text, key string) (string, bool) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"to": "+" + c.contact, "text": text, "idempotency_key": key})
	if key == "" {
		body, _ = json.Marshal(map[string]string{"to": "+" + c.contact, "text": text})
	}
	deadline := time.Now().Add(crashPatience)
	for {
		resp, err := http.Post(api+"/api/accounts/"+id+"/messages", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var res struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		}
		switch {
		case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK:
			if err := json.Unmarshal(b, &res); err != nil || res.ID == "" {
				t.Fatalf("send %q: %s %s", text, resp.Status, b)
			}
			return res.ID, res.Duplicate
		case resp.StatusCode != http.StatusConflict || time.Now().After(deadline):
			t.Fatalf("send %q: %s %s", text, resp.Status, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// accountSend is accountSendKeyed for a send that must not be a repeat.
func (c *conversation) accountSend(t *testing.T, api, id, text, key string) string {
	t.Helper()
	mid, dup := c.accountSendKeyed(t, api, id, text, key)
	if dup {
		t.Fatalf("send %q (key %q) answered as a repeat of %s", text, key, mid)
	}
	return mid
}

// waitReceived waits until both of the contact's devices decrypted the
// message id, and checks that they did so from a msg (a session that goes
// on, no re-key).
func (c *conversation) waitReceived(t *testing.T, id, text string) {
	t.Helper()
	deadline := time.Now().Add(crashPatience)
	for {
		var got []emulator.ReceivedInfo
		for _, r := range c.received(t) {
			if r.ID == id {
				got = append(got, r)
			}
		}
		if len(got) >= 2 {
			for _, r := range got {
				if r.Type != "msg" || r.Text != text {
					t.Fatalf("the contact's device %s received %s as %s %q, want a msg %q", r.Device, id, r.Type, r.Text, text)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the contact's devices did not both receive %s (%q) within %s: %+v", id, text, crashPatience, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warmUp makes both of the contact's devices write first (each starts a
// session with a pkmsg) and the account answer on both sessions (msg):
// from then on every message either way is a msg.
func (c *conversation) warmUp(t *testing.T, api, id string) {
	t.Helper()
	want := map[string]string{}
	for dev := range 2 {
		text := fmt.Sprintf("hello from device %d", dev)
		mid, err := c.contactSend(dev, text)
		if err != nil {
			t.Fatal(err)
		}
		want[mid] = text
	}
	c.stream.waitFor(t, "the first messages", want)
	mid := c.accountSend(t, api, id, "hello back", "")
	c.waitReceived(t, mid, "hello back")
	c.baseline = c.info(t).Traffic
	if c.baseline != (emulator.Traffic{SentPreKey: 2, ReceivedMsg: 2}) {
		t.Fatalf("traffic after the first exchange %+v, want two pkmsg out and two msg in", c.baseline)
	}
}

// steadyAfter checks that the conversation goes on both ways without a
// re-key: the contact's next messages decrypt, the account's next one
// arrives as a msg on both devices.
func (c *conversation) steadyAfter(t *testing.T, api, id string) {
	t.Helper()
	want := map[string]string{}
	for dev := range 2 {
		text := fmt.Sprintf("after, from device %d", dev)
		mid, err := c.contactSend(dev, text)
		if err != nil {
			t.Fatal(err)
		}
		want[mid] = text
	}
	c.stream.waitFor(t, "the contact's messages afterwards", want)
	mid := c.accountSend(t, api, id, "after, ours", "")
	c.waitReceived(t, mid, "after, ours")
}

// checkOnce checks that the account's text reached each of the contact's
// devices at most once, under the id its send was given.
func (c *conversation) checkOnce(t *testing.T, text, id string) {
	t.Helper()
	per := map[string]int{}
	for _, r := range c.received(t) {
		if r.Text != text {
			continue
		}
		if r.ID != id {
			t.Fatalf("%q reached %s as message %s, want only %s", text, r.Device, r.ID, id)
		}
		if per[r.Device]++; per[r.Device] > 1 {
			t.Fatalf("%q reached %s twice", text, r.Device)
		}
	}
	if len(per) == 0 {
		t.Logf("%q (%s) was never sent: the kill came before it went out (a send is at most once; its key, if any, is spent)", text, id)
	}
}

// checkNoRekey checks that no session started again and nothing failed
// to decrypt, on the contact's side and on the account's (the emulator
// counts the retry receipts our companion sends).
func (c *conversation) checkNoRekey(t *testing.T) {
	t.Helper()
	tr := c.info(t).Traffic
	if tr.SentPreKey != c.baseline.SentPreKey || tr.ReceivedPreKey != 0 || tr.DecryptFailures != 0 {
		t.Errorf("contact traffic %+v after the first exchange's %+v: a session started again or failed", tr, c.baseline)
	}
	var st emulator.Stats
	c.emu.call(t, http.MethodGet, "/stats", "", &st)
	if st.RetryReceipts != 0 || st.DecryptFailures != 0 || st.CompanionDecryptFailures != 0 || st.MessagesUndelivered != 0 || st.Resends != 0 {
		t.Errorf("emulator: retry_receipts %d, decrypt_failures %d, companion_decrypt_failures %d, messages_undelivered %d, resends %d: want all 0",
			st.RetryReceipts, st.DecryptFailures, st.CompanionDecryptFailures, st.MessagesUndelivered, st.Resends)
	}
	if len(st.Violations) > 0 {
		t.Errorf("violations: %v", st.Violations[:min(5, len(st.Violations))])
	}
}

// contactSender makes the contact send as fast as the emulator takes
// them, its two devices in turn, until stopped: at most sendAhead messages
// beyond the number the test last waited for, so that a slow restart does
// not pile up thousands.
type contactSender struct {
	stopc chan struct{}
	done  chan struct{}

	mu    sync.Mutex
	sent  map[string]string // message id → text
	limit int               // sends pause at this count
	err   error
}

// sendAhead is how many messages the contact sends beyond the count the
// test waits for: those are in flight when the test kills an instance.
const sendAhead = 20

func (c *conversation) keepSending(t *testing.T) *contactSender {
	s := &contactSender{stopc: make(chan struct{}), done: make(chan struct{}), sent: map[string]string{}, limit: sendAhead}
	go func() {
		defer close(s.done)
		for i := 0; ; {
			s.mu.Lock()
			full := len(s.sent) >= s.limit
			s.mu.Unlock()
			if full {
				select {
				case <-s.stopc:
					return
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
			text := fmt.Sprintf("message %d", i)
			id, err := c.contactSend(i%2, text)
			i++
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err = err
			}
			if err == nil {
				s.sent[id] = text
			}
			s.mu.Unlock()
			select {
			case <-s.stopc:
				return
			default:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-s.stopc:
		default:
			close(s.stopc)
		}
		<-s.done
	})
	return s
}

func (s *contactSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// waitSent waits until the contact sent n messages; it goes on sending up
// to sendAhead more.
func (s *contactSender) waitSent(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	s.limit = max(s.limit, n+sendAhead)
	s.mu.Unlock()
	deadline := time.Now().Add(crashPatience)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the contact sent only %d of %d messages within %s", s.count(), n, crashPatience)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the sending and returns what was sent.
func (s *contactSender) stop(t *testing.T) map[string]string {
	t.Helper()
	close(s.stopc)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Fatalf("the contact's send failed: %v", s.err)
	}
	return s.sent
}

// checkDelivered waits until every message the contact sent came out of
// the event stream (at least once: repeats share the id).
func (c *conversation) checkDelivered(t *testing.T, sent map[string]string) {
	t.Helper()
	n := c.stream.waitFor(t, "every message the contact sent", sent)
	t.Logf("all %d messages the contact sent came as events (%d events: %d repeats)", len(sent), n, n-len(sent))
}
