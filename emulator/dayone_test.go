package emulator_test

import (
	"strings"
	"testing"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Day-one over real sockets: the exact ack rules, prekey uploads and their
// consumption. Timing-heavy behaviour is tested in synctest bubbles
// (dayone_internal_test.go).

var ackableTags = map[string]bool{"message": true, "receipt": true, "notification": true, "call": true}

// pump reads nodes, acking ackable stanzas and answering server pings,
// until one satisfies until, which it returns (unacked).
func (c *testConn) pump(until func(node.Node) bool) node.Node {
	c.t.Helper()
	for {
		n := c.next()
		if until(n) {
			return n
		}
		if ackableTags[n.Tag] {
			c.send(emulator.AckFor(n))
		}
		if x, _ := n.Attr("xmlns"); n.Tag == "iq" && x == "urn:xmpp:ping" {
			a := node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "result"))
			if id, ok := n.Attr("id"); ok {
				a = a.WithAttr(node.StrAttr("id", id))
			}
			c.send(a)
		}
	}
}

// quiet is day-one with only the parts a test turns on.
func quiet() emulator.DayOne {
	return emulator.DayOne{Enabled: true, PushRate: -1, PushBurst: -1, AckDeadline: -1, PingInterval: -1}
}

func TestAckShapes(t *testing.T) {
	d1 := quiet()
	d1.PushBurst = 40
	srv := emutest.Start(t, emulator.Options{DayOne: d1})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	var burst []node.Node
	for range 40 {
		n := c.next()
		if !ackableTags[n.Tag] {
			t.Fatalf("burst holds %v", n)
		}
		burst = append(burst, n)
	}
	if ib := c.expectTag("ib"); ib.Children()[0].Tag != "offline" {
		t.Fatalf("got %v, want <ib><offline/>", ib)
	}
	find := func(what string, ok func(n node.Node) bool) node.Node {
		t.Helper()
		for _, n := range burst {
			if ok(n) {
				return n
			}
		}
		t.Fatalf("no %s in the burst", what)
		return node.Node{}
	}
	has := func(n node.Node, key string) bool { _, ok := n.Attr(key); return ok }
	directMsg := find("1:1 message", func(n node.Node) bool {
		return n.Tag == "message" && !has(n, "participant") && !has(n, "recipient")
	})
	groupMsg := find("group message", func(n node.Node) bool { return n.Tag == "message" && has(n, "participant") })
	fromMe := find("message with recipient", func(n node.Node) bool { return n.Tag == "message" && has(n, "recipient") })
	notif := find("notification without participant", func(n node.Node) bool { return n.Tag == "notification" && !has(n, "participant") })
	plainRcpt := find("receipt without type", func(n node.Node) bool { return n.Tag == "receipt" && !has(n, "type") })
	call := find("call", func(n node.Node) bool { return n.Tag == "call" })
	other := jid.New("15551234567", jid.DefaultUserServer)

	tests := []struct {
		name string
		ack  node.Node
		want string // in the violation
	}{
		{"type on a message ack", emulator.AckFor(directMsg).WithAttr(node.StrAttr("type", "text")), "type on a message ack"},
		{"error on a message ack", emulator.AckFor(directMsg).WithAttr(node.StrAttr("error", "500")), "error attribute"},
		{"missing participant", node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", attr(groupMsg, "id")),
			node.JIDAttr("to", jidAttr(groupMsg, "from"))), "no participant"},
		{"participant where the stanza had none", emulator.AckFor(directMsg).WithAttr(node.JIDAttr("participant", other)), "participant present"},
		{"missing recipient", node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", attr(fromMe, "id")),
			node.JIDAttr("to", jidAttr(fromMe, "from"))), "no recipient"},
		{"wrong to", emulator.AckFor(notif).WithAttr(node.JIDAttr("to", other)), "to 15551234567@s.whatsapp.net"},
		{"to as a string", emulator.AckFor(notif).WithAttr(node.StrAttr("to", jidAttr(notif, "from").String())), "not a JID"},
		{"missing type on a notification ack", node.New("ack", node.StrAttr("class", "notification"), node.StrAttr("id", attr(notif, "id")),
			node.JIDAttr("to", jidAttr(notif, "from"))), "no type"},
		{"type on an ack for a stanza without type", emulator.AckFor(plainRcpt).WithAttr(node.StrAttr("type", "read")), "had no type"},
		{"wrong class", emulator.AckFor(notif).WithAttr(node.StrAttr("class", "receipt")), "class receipt for a <notification>"},
		{"unknown id", emulator.AckFor(call).WithAttr(node.StrAttr("id", "3EB0NOPE")), "no pending stanza"},
		{"ack for presence", node.New("ack", node.StrAttr("class", "presence"), node.JIDAttr("to", other)), "class presence"},
		{"ack for an ib", node.New("ack", node.StrAttr("class", "ib"), node.StrAttr("id", "1"), node.JIDAttr("to", jid.ServerJID)), "class ib"},
		{"child in an ack", emulator.AckFor(call).WithChildren(node.New("x")), "no content"},
		{"unexpected attribute", emulator.AckFor(call).WithAttr(node.StrAttr("from", "x")), "unexpected attribute from"},
		{"no id", node.New("ack", node.StrAttr("class", "call"), node.JIDAttr("to", jidAttr(call, "from"))), "no id"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(tt.ack)
			st := emutest.WaitStats(t, srv, waitTimeout, "the malformed ack", func(s emulator.Stats) bool { return s.AcksMalformed == int64(i+1) })
			if v := st.Violations[i]; !strings.Contains(v, tt.want) || !strings.Contains(v, "malformed ack") {
				t.Fatalf("violation %q, want it to say %q", v, tt.want)
			}
		})
	}
	c.t = t
	// Malformed acks settle nothing: the right ones still do, and a second
	// ack of a settled stanza is unknown.
	for _, n := range burst {
		c.send(emulator.AckFor(n))
	}
	emutest.WaitStats(t, srv, waitTimeout, "40 good acks", func(s emulator.Stats) bool { return s.AcksOK == 40 })
	c.send(emulator.AckFor(call))
	st := emutest.WaitStats(t, srv, waitTimeout, "the repeated ack", func(s emulator.Stats) bool { return s.AcksMalformed == int64(len(tests)+1) })
	if !strings.Contains(st.Violations[len(tests)], "already acked") {
		t.Fatalf("violation %q", st.Violations[len(tests)])
	}
	// None of it closed the connection.
	c.send(iq("still-there", "get", "w:p"))
	c.expectResult("still-there", "result")
	if st := srv.Stats(); st.StanzasPushed != 40 || st.AckDeadlineKills != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func attr(n node.Node, key string) string {
	v, _ := n.Attr(key)
	return v
}

func jidAttr(n node.Node, key string) jid.JID {
	j, _ := n.AttrJID(key)
	return j
}

// upload is a prekey upload's parts (PROTOCOL.md 9.8), to break one at a
// time.
type upload struct {
	to                       node.Attr
	reg, typ, ident          node.Node
	keys                     []node.Node
	skeyID, skeyVal, skeySig node.Node
	extra                    []node.Node
	noSkey                   bool
}

func goodUpload(t *testing.T, d *testDevice, first, n int) upload {
	t.Helper()
	u := upload{
		to:    node.JIDAttr("to", jid.ServerJID),
		reg:   node.New("registration").WithBytes([]byte{byte(d.regID >> 24), byte(d.regID >> 16), byte(d.regID >> 8), byte(d.regID)}),
		typ:   node.New("type").WithBytes([]byte{5}),
		ident: node.New("identity").WithBytes(d.identity.Pub[:]),
	}
	for i := first; i < first+n; i++ {
		u.keys = append(u.keys, prekey(i, 32))
	}
	sig := signSPK(t, d)
	u.skeyID = node.New("id").WithBytes([]byte{0, 0, 1})
	u.skeyVal = node.New("value").WithBytes(d.spk.Pub[:])
	u.skeySig = node.New("signature").WithBytes(sig[:])
	return u
}

// prekey is a <key> with a value of size bytes that is not of small order.
func prekey(id, size int) node.Node {
	value := make([]byte, size)
	for i := range value {
		value[i] = byte(id + i)
	}
	return node.New("key").WithChildren(
		node.New("id").WithBytes([]byte{byte(id >> 16), byte(id >> 8), byte(id)}),
		node.New("value").WithBytes(value))
}

func (u upload) node(id string) node.Node {
	children := []node.Node{u.reg, u.typ, u.ident, node.New("list").WithChildren(u.keys...)}
	if !u.noSkey {
		children = append(children, node.New("skey").WithChildren(u.skeyID, u.skeyVal, u.skeySig))
	}
	children = append(children, u.extra...)
	return node.New("iq", node.StrAttr("id", id), u.to, node.StrAttr("type", "set"), node.StrAttr("xmlns", "encrypt")).
		WithChildren(children...)
}

func TestPrekeyUploadValidation(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet()})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	c.expectTag("ib") // <ib><offline count="0"/>
	other := newTestDevice(t)

	tests := []struct {
		name   string
		mutate func(u *upload)
		want   string
	}{
		{"wrong registration ID", func(u *upload) { u.reg = node.New("registration").WithBytes([]byte{0, 0, 0, 9}) }, "registration ID"},
		{"registration of 3 bytes", func(u *upload) { u.reg = node.New("registration").WithBytes([]byte{0, 0x30, 0x39}) }, "3 bytes, want 4"},
		{"registration as a string", func(u *upload) { u.reg = node.New("registration").WithText("12345") }, "not bytes"},
		{"type 06", func(u *upload) { u.typ = node.New("type").WithBytes([]byte{6}) }, "want 05"},
		{"another identity", func(u *upload) { u.ident = node.New("identity").WithBytes(other.identity.Pub[:]) }, "identity key"},
		{"no keys", func(u *upload) { u.keys = nil }, "0 keys"},
		{"813 keys", func(u *upload) {
			u.keys = nil
			for i := range 813 {
				u.keys = append(u.keys, prekey(100+i, 32))
			}
		}, "813 keys"},
		{"a key ID twice", func(u *upload) { u.keys = append(u.keys, prekey(1, 32)) }, "twice in one upload"},
		{"a key ID of 4 bytes", func(u *upload) {
			u.keys[0] = node.New("key").WithChildren(node.New("id").WithBytes([]byte{0, 0, 0, 1}), node.New("value").WithBytes(make([]byte, 32)))
		}, "4 bytes, want 3"},
		{"a key value of 31 bytes", func(u *upload) { u.keys[1] = prekey(2, 31) }, "31 bytes, want 32"},
		{"a key value of small order", func(u *upload) {
			u.keys[1] = node.New("key").WithChildren(node.New("id").WithBytes([]byte{0, 0, 2}), node.New("value").WithBytes(make([]byte, 32)))
		}, "low-order public key"},
		{"a key without value", func(u *upload) {
			u.keys[0] = node.New("key").WithChildren(node.New("id").WithBytes([]byte{0, 0, 1}))
		}, "1 children, want 2"},
		{"bad signed prekey signature", func(u *upload) {
			b, _ := u.skeySig.Bytes()
			bad := append([]byte(nil), b...)
			bad[3] ^= 1
			u.skeySig = node.New("signature").WithBytes(bad)
		}, "signature does not verify"},
		{"no skey", func(u *upload) { u.noSkey = true }, "no <skey>"},
		{"another signed prekey ID", func(u *upload) { u.skeyID = node.New("id").WithBytes([]byte{0, 0, 2}) }, "not the signed prekey the device registered"},
		{"an extra child", func(u *upload) { u.extra = []node.Node{node.New("device-identity")} }, "unexpected child <device-identity>"},
		{"to as a string", func(u *upload) { u.to = node.StrAttr("to", "s.whatsapp.net") }, "to is not s.whatsapp.net"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			u := goodUpload(t, d, 1, 6)
			tt.mutate(&u)
			id := "bad-" + string(rune('a'+i))
			c.send(u.node(id))
			e, ok := c.expectResult(id, "error").Child("error")
			if code, _ := e.Attr("code"); !ok || code != "400" {
				t.Fatalf("got error %v, want code 400", e)
			}
			st := emutest.WaitStats(t, srv, waitTimeout, "the violation", func(s emulator.Stats) bool { return len(s.Violations) == i+1 })
			if v := st.Violations[i]; !strings.Contains(v, tt.want) || !strings.Contains(v, "prekey upload") {
				t.Fatalf("violation %q, want it to say %q", v, tt.want)
			}
		})
	}
	c.t = t
	if st := srv.Stats(); st.PrekeyUploads != 0 || st.DevicesWithPrekeys != 0 {
		t.Fatalf("stats after bad uploads: %+v", st)
	}

	c.send(goodUpload(t, d, 1, 6).node("good-1"))
	c.expectResult("good-1", "result")
	// IDs already uploaded are accepted again (a lost result makes a
	// client resend them) and counted once.
	c.send(goodUpload(t, d, 5, 4).node("again"))
	c.expectResult("again", "result")
	c.send(iq("count", "get", "encrypt", node.New("count")))
	countIs("8")(t, c.expectResult("count", "result"))
	st := srv.Stats()
	if st.PrekeyUploads != 2 || st.DevicesWithPrekeys != 1 || len(st.Violations) != len(tests) {
		t.Fatalf("stats %+v", st)
	}

	// A 1:1 pkmsg consumes a prekey; below 5 the server says so.
	fast := quiet()
	fast.PushRate = 200
	if err := srv.SetDayOne(fast); err != nil {
		t.Fatal(err)
	}
	n := c.pump(func(n node.Node) bool {
		typ, _ := n.Attr("type")
		return n.Tag == "notification" && typ == "encrypt"
	})
	if from, ok := n.AttrJID("from"); !ok || from != jid.ServerJID {
		t.Fatalf("encrypt notification from %v", n)
	}
	if cnt, ok := n.Child("count"); !ok || attr(*cnt, "value") != "4" {
		t.Fatalf("got %v, want <count value=\"4\"/>", n)
	}
	c.send(emulator.AckFor(n)) // ackable like any notification
	if err := srv.SetDayOne(quiet()); err != nil {
		t.Fatal(err)
	}
	c.send(goodUpload(t, d, 9, 50).node("refill"))
	c.pump(func(n node.Node) bool { return n.Tag == "iq" && attr(n, "id") == "refill" })
	emutest.WaitStats(t, srv, waitTimeout, "the refill", func(s emulator.Stats) bool { return s.PrekeyUploads == 3 && s.DevicesWithPrekeys == 1 })
	if err := srv.Phone().Unlink(d.jid); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.DevicesWithPrekeys != 0 || st.AcksMalformed != 0 {
		t.Fatalf("stats after unlink: %+v", st)
	}
}

func TestPrekeysOutsideDayOneStayLenient(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	c.send(iq("u", "set", "encrypt", node.New("list").WithChildren(node.New("key"))))
	c.expectResult("u", "result")
	if st := srv.Stats(); st.PrekeyUploads != 1 || st.DevicesWithPrekeys != 1 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Nothing is pushed, and acks are ignored as before.
	c.send(node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", "x")))
	c.send(iq("p", "get", "w:p"))
	c.expectResult("p", "result")
	if st := srv.Stats(); st.StanzasPushed != 0 || st.AcksMalformed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDayOneReplacedConnectionHandsOver(t *testing.T) {
	d1 := quiet()
	d1.PushBurst = 5
	srv := emutest.Start(t, emulator.Options{DayOne: d1})
	d := newTestDevice(t)
	pair(t, srv, d)
	c1 := login(t, srv, d)
	c1.expectTag("success")
	var first []node.Node
	for range 5 {
		first = append(first, c1.next())
	}
	// A second login takes the device over before the first acked: it gets
	// the five again, then its own burst.
	c2 := login(t, srv, d)
	c2.expectTag("success")
	for i, want := range first {
		if got := c2.next(); !got.Equal(want) {
			t.Fatalf("stanza %d on the new connection: %v, want %v", i, got, want)
		}
	}
	for range 5 {
		c2.send(emulator.AckFor(c2.next()))
	}
	for _, n := range first {
		c2.send(emulator.AckFor(n))
	}
	emutest.WaitStats(t, srv, waitTimeout, "ten acks", func(s emulator.Stats) bool { return s.AcksOK == 10 })
	if st := srv.Stats(); st.Redeliveries != 5 || st.AcksMalformed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func signSPK(t *testing.T, d *testDevice) [64]byte {
	t.Helper()
	sig, err := crypto.Sign(d.identity, append([]byte{5}, d.spk.Pub[:]...))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
