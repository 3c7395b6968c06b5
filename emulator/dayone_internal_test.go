package emulator

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// Day-one behaviour over time, in synctest bubbles: the real default
// durations (60 s ack deadline, 30 s pings) run in fake time.

func newBubbleServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// afterSuccess returns the nodes after <success>, failing if there is none.
func afterSuccess(t *testing.T, got []node.Node) []node.Node {
	t.Helper()
	for i, n := range got {
		if n.Tag == "success" {
			return got[i+1:]
		}
	}
	t.Fatalf("no <success> in %v", got)
	return nil
}

func TestDayOneWellBehavedClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{DayOne: DayOne{Enabled: true}})
		d := addPipeDevice(t, s)
		c := login(t, s, d, clientPolicy{ack: true, pings: true}, payload.Version{})
		// Five minutes: five ack deadlines, ten server pings.
		time.Sleep(5*time.Minute + time.Second)
		synctest.Wait()

		st := s.Stats()
		if st.AcksMalformed != 0 || st.AckDeadlineKills != 0 || len(st.Violations) != 0 {
			t.Fatalf("a correct client got malformed acks, kills or violations: %+v", st)
		}
		if st.StanzasPushed < DefaultPushBurst+100 || st.AcksOK != st.StanzasPushed || st.Redeliveries != 0 {
			t.Fatalf("pushed %d, acked %d, redelivered %d", st.StanzasPushed, st.AcksOK, st.Redeliveries)
		}
		if st.ServerPingsSent != 10 || st.ServerPingsAnswered != 10 {
			t.Fatalf("server pings sent %d, answered %d, want 10", st.ServerPingsSent, st.ServerPingsAnswered)
		}
		if c.closed() {
			t.Fatal("connection closed")
		}

		got := afterSuccess(t, c.nodes())
		// The burst: 20 ackable stanzas, then <ib><offline count="20"/>.
		for i, n := range got[:DefaultPushBurst] {
			if !ackableTags[n.Tag] {
				t.Fatalf("burst stanza %d is %v", i, n)
			}
		}
		ib := got[DefaultPushBurst]
		if off, ok := ib.Child("offline"); ib.Tag != "ib" || !ok {
			t.Fatalf("after the burst: %v, want <ib><offline/>", ib)
		} else if v, _ := off.Attr("count"); v != "20" {
			t.Fatalf("offline count %q, want 20", v)
		}
		// Every shape, unique ids, and some stanzas that take no ack.
		ids := map[string]bool{}
		seen := map[string]bool{}
		for _, n := range got {
			typ, _ := n.Attr("type")
			switch n.Tag {
			case "message":
				enc, _ := n.Child("enc")
				et, _ := enc.Attr("type")
				_, grp := n.AttrJID("participant")
				_, rcpt := n.AttrJID("recipient")
				seen["message/"+et] = true
				if grp {
					seen["message/group"] = true
				}
				if rcpt {
					seen["message/recipient"] = true
				}
			case "receipt":
				_, rcpt := n.AttrJID("recipient")
				_, grp := n.AttrJID("participant")
				seen["receipt/"+typ] = true
				if rcpt {
					seen["receipt/recipient"] = true
				}
				if grp {
					seen["receipt/participant"] = true
				}
			case "notification":
				seen["notification/"+typ] = true
			case "call", "presence", "chatstate":
				seen[n.Tag] = true
			}
			if ackableTags[n.Tag] {
				id, _ := n.Attr("id")
				if ids[id] {
					t.Fatalf("id %s pushed twice", id)
				}
				ids[id] = true
				if from, ok := n.AttrJID("from"); !ok || from.IsEmpty() {
					t.Fatalf("stanza without a JID from: %v", n)
				}
			}
		}
		// No msg: a contact's session stays a pkmsg one until it hears
		// from the client, and this client never writes (dayonemsg.go).
		for _, want := range []string{"message/pkmsg", "message/skmsg", "message/group", "message/recipient",
			"receipt/", "receipt/read", "receipt/recipient", "receipt/participant",
			"notification/w:gp2", "notification/devices", "notification/picture", "notification/server_sync",
			"notification/account_sync", "notification/privacy_token", "notification/" + unknownNotificationType,
			"call", "presence", "chatstate"} {
			if !seen[want] {
				t.Errorf("no %s pushed in five minutes", want)
			}
		}
	})
}

func TestDayOneUnackedStanzaKillsAndIsRedelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{DayOne: DayOne{Enabled: true}})
		d := addPipeDevice(t, s)
		c := login(t, s, d, clientPolicy{pings: true}, payload.Version{})
		time.Sleep(DefaultAckDeadline + time.Second)
		synctest.Wait()
		if !c.closed() {
			t.Fatal("a client that never acks is still connected after the deadline")
		}
		got := afterSuccess(t, c.nodes())
		oldest := got[0]
		last := got[len(got)-1]
		ack, ok := last.Child("ack")
		if last.Tag != "stream:error" || !ok {
			t.Fatalf("last node %v, want <stream:error><ack/>", last)
		}
		oldID, _ := oldest.Attr("id")
		if class, _ := ack.Attr("class"); class != oldest.Tag {
			t.Fatalf("stream error names class %q, the oldest stanza is a <%s>", class, oldest.Tag)
		}
		if id, _ := ack.Attr("id"); id != oldID {
			t.Fatalf("stream error names id %q, the oldest stanza is %q", id, oldID)
		}
		st := s.Stats()
		if st.AckDeadlineKills != 1 || len(st.Violations) != 1 || !strings.Contains(st.Violations[0], "not acked") {
			t.Fatalf("stats after the kill: %+v", st)
		}
		var pending []node.Node
		for _, n := range got {
			if ackableTags[n.Tag] {
				pending = append(pending, n)
			}
		}

		// The next login gets every unacked stanza again, oldest first, same
		// ids and content, before anything new.
		c2 := login(t, s, d, clientPolicy{ack: true, pings: true}, payload.Version{})
		time.Sleep(3 * DefaultAckDeadline)
		synctest.Wait()
		got2 := afterSuccess(t, c2.nodes())
		if len(got2) < len(pending) {
			t.Fatalf("%d nodes after the second success, %d were pending", len(got2), len(pending))
		}
		for i, want := range pending {
			if !got2[i].Equal(want) {
				t.Fatalf("redelivered stanza %d is %v, want %v", i, got2[i], want)
			}
		}
		st = s.Stats()
		if st.Redeliveries != int64(len(pending)) || st.AckDeadlineKills != 1 || st.AcksMalformed != 0 {
			t.Fatalf("stats after redelivery: %+v (pending %d)", st, len(pending))
		}
		if st.AcksOK != st.StanzasPushed {
			t.Fatalf("acked %d of %d", st.AcksOK, st.StanzasPushed)
		}
		if c2.closed() {
			t.Fatal("the acking client was disconnected")
		}
	})
}

func TestDayOneDeliveryReceiptStopsTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{DayOne: DayOne{Enabled: true, PushRate: -1, PushBurst: 20, PingInterval: -1}})
		d := addPipeDevice(t, s)
		c := login(t, s, d, clientPolicy{}, payload.Version{})
		synctest.Wait()
		// Ack everything but messages; send delivery receipts for messages.
		var msgs []node.Node
		for _, n := range afterSuccess(t, c.nodes()) {
			switch {
			case n.Tag == "message":
				id, _ := n.Attr("id")
				from, _ := n.AttrJID("from")
				c.send(node.New("receipt", node.StrAttr("id", id), node.JIDAttr("to", from)))
				msgs = append(msgs, n)
			case ackableTags[n.Tag]:
				c.send(correctAck(n))
			}
		}
		time.Sleep(2 * DefaultAckDeadline)
		synctest.Wait()
		if c.closed() || s.Stats().AckDeadlineKills != 0 {
			t.Fatalf("killed although every message got a delivery receipt: %+v", s.Stats())
		}
		// The acks that follow are still recognised (whatsmeow sends both).
		for _, m := range msgs {
			c.send(correctAck(m))
		}
		synctest.Wait()
		if st := s.Stats(); st.AcksOK != 20 || st.AcksMalformed != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestDayOneServerPings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{DayOne: DayOne{Enabled: true, PushRate: -1, PushBurst: -1}})
		d := addPipeDevice(t, s)
		c := login(t, s, d, clientPolicy{pings: true}, payload.Version{})
		time.Sleep(6*DefaultPingInterval + time.Second)
		synctest.Wait()
		var pings []node.Node
		for _, n := range afterSuccess(t, c.nodes()) {
			if isServerPing(n) {
				pings = append(pings, n)
			}
		}
		if len(pings) != 6 {
			t.Fatalf("%d server pings in three minutes, want 6", len(pings))
		}
		// 1: type+id, 2: id, 3: type, 4: id, 5: type+id, 6: neither.
		want := []struct{ typ, id bool }{{true, true}, {false, true}, {true, false}, {false, true}, {true, true}, {false, false}}
		for i, p := range pings {
			typ, hasType := p.Attr("type")
			_, hasID := p.Attr("id")
			if hasType != want[i].typ || hasID != want[i].id || (hasType && typ != "get") {
				t.Fatalf("ping %d: %v, want type %v id %v", i+1, p, want[i].typ, want[i].id)
			}
			if from, ok := p.AttrJID("from"); !ok || from != jid.ServerJID {
				t.Fatalf("ping from is not the server JID: %v", p)
			}
		}
		if st := s.Stats(); st.ServerPingsSent != 6 || st.ServerPingsAnswered != 6 || len(st.Violations) != 0 {
			t.Fatalf("stats %+v", st)
		}

		// Stop answering: the stream ends at the next ping.
		c.setPolicy(clientPolicy{})
		time.Sleep(2*DefaultPingInterval + time.Second)
		synctest.Wait()
		if !c.closed() {
			t.Fatal("a client that ignores a server ping is still connected")
		}
		got := c.nodes()
		last := got[len(got)-1]
		if ack, ok := last.Child("ack"); last.Tag != "stream:error" || !ok {
			t.Fatalf("last node %v, want <stream:error><ack class=iq/>", last)
		} else if class, _ := ack.Attr("class"); class != "iq" {
			t.Fatalf("stream error %v, want class iq", last)
		}
		if st := s.Stats(); st.AckDeadlineKills != 1 || st.ServerPingsSent != 7 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestDayOneServerPingDeadlineAndBadAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer func(ping node.Node) node.Node // nil: none
		want   string                         // violation substring
	}{
		{name: "no answer within the ack deadline", want: "not answered within 10s"},
		{name: "unknown id", answer: func(node.Node) node.Node {
			return node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "result"), node.StrAttr("id", "nope"))
		}, want: "never sent"},
		{name: "answer without the id", answer: func(node.Node) node.Node {
			return node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "result"))
		}, want: "iq without id"},
		{name: "to as a string", answer: func(p node.Node) node.Node {
			id, _ := p.Attr("id")
			return node.New("iq", node.StrAttr("to", "s.whatsapp.net"), node.StrAttr("type", "result"), node.StrAttr("id", id))
		}, want: "without to=s.whatsapp.net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newBubbleServer(t, Options{DayOne: DayOne{Enabled: true, PushRate: -1, PushBurst: -1, AckDeadline: 10 * time.Second}})
				d := addPipeDevice(t, s)
				c := login(t, s, d, clientPolicy{}, payload.Version{})
				time.Sleep(DefaultPingInterval + time.Second)
				synctest.Wait()
				got := c.nodes()
				ping := got[len(got)-1]
				if !isServerPing(ping) {
					t.Fatalf("got %v, want a server ping", ping)
				}
				if tt.answer != nil {
					c.send(tt.answer(ping))
				}
				time.Sleep(DefaultPingInterval)
				synctest.Wait()
				if !c.closed() {
					t.Fatal("still connected")
				}
				st := s.Stats()
				if st.ServerPingsAnswered != 0 || len(st.Violations) == 0 || !strings.Contains(st.Violations[0], tt.want) {
					t.Fatalf("stats %+v, want a violation about %q", st, tt.want)
				}
			})
		})
	}
}

func TestDayOneSettingsReachLiveConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{DayOne: DayOne{Enabled: true, PushRate: -1, PushBurst: -1, PingInterval: -1}})
		d := addPipeDevice(t, s)
		c := login(t, s, d, clientPolicy{ack: true}, payload.Version{})
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := s.Stats(); st.StanzasPushed != 0 {
			t.Fatalf("pushed %d with pushes off", st.StanzasPushed)
		}
		if err := s.SetDayOne(DayOne{Enabled: true, PushRate: 10, PushBurst: -1, PingInterval: -1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		pushed := s.Stats().StanzasPushed
		if pushed < 300 {
			t.Fatalf("pushed %d in a minute at 10/s", pushed)
		}
		// Off: the live connection pauses.
		if err := s.SetDayOne(DayOne{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		pushed = s.Stats().StanzasPushed
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := s.Stats(); st.StanzasPushed != pushed || c.closed() {
			t.Fatalf("pushed %d more while off (closed %v)", st.StanzasPushed-pushed, c.closed())
		}
	})
}

func TestTemporaryBanCountsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{Faults: Faults{LoginFailure402: 30 * time.Second}})
		d := addPipeDevice(t, s)
		try := func() node.Node {
			c := login(t, s, d, clientPolicy{}, payload.Version{})
			synctest.Wait()
			got := c.nodes()
			if len(got) == 0 {
				t.Fatal("no answer to the login")
			}
			return got[0]
		}
		expect402 := func(expire string) {
			t.Helper()
			n := try()
			reason, _ := n.Attr("reason")
			code, _ := n.Attr("code")
			exp, _ := n.Attr("expire")
			if n.Tag != "failure" || reason != "402" || code != "101" || exp != expire {
				t.Fatalf("got %v, want failure 402 code 101 expire %s", n, expire)
			}
		}
		expect402("30")
		time.Sleep(10 * time.Second)
		expect402("20")
		// Setting the same faults again keeps the running ban.
		if err := s.SetFaults(Faults{LoginFailure402: 30 * time.Second, DropPongs: true}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9500 * time.Millisecond)
		expect402("11")
		time.Sleep(11 * time.Second)
		if n := try(); n.Tag != "success" {
			t.Fatalf("after the ban: %v", n)
		}
		if !slices.Contains(s.Faults().Specs(), "login-failure-402=30s") {
			t.Fatalf("the spent fault is not listed: %v", s.Faults().Specs())
		}
		if st := s.Stats(); st.LoginsRejected != 3 || st.Logins != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}
