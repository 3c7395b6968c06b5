package e2e

import (
	"errors"
	"fmt"
	"testing"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

func groupAnswer(attrs []node.Attr, participants ...node.Node) node.Node {
	return node.New("iq", node.StrAttr("type", "result")).WithChildren(
		node.New("group", append([]node.Attr{node.StrAttr("id", "120363000000000001")}, attrs...)...).WithChildren(participants...))
}

func participant(j string) node.Node {
	p, err := jid.Parse(j)
	if err != nil {
		panic(err)
	}
	return node.New("participant", node.JIDAttr("jid", p))
}

func TestGroupInfoQuery(t *testing.T) {
	g := jid.New("120363000000000001", jid.GroupServer)
	q := GroupInfoQuery("7", g)
	to, _ := q.AttrJID("to")
	xmlns, _ := q.Attr("xmlns")
	typ, _ := q.Attr("type")
	query, ok := q.Child("query")
	req, _ := query.Attr("request")
	if q.Tag != "iq" || to != g || xmlns != "w:g2" || typ != "get" || !ok || req != "interactive" {
		t.Fatalf("query %v", q)
	}
}

func TestParseGroupParticipants(t *testing.T) {
	got, err := ParseGroupParticipants(groupAnswer([]node.Attr{node.StrAttr("addressing_mode", "pn")},
		participant("15551000001@s.whatsapp.net"), participant("15551000002:3@s.whatsapp.net"),
		participant("15551000001@s.whatsapp.net"), node.New("description")))
	want := []jid.JID{jid.New("15551000001", jid.DefaultUserServer), jid.New("15551000002", jid.DefaultUserServer)}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, %v; want %v (devices dropped, duplicates once)", got, err, want)
	}

	many := make([]node.Node, MaxGroupParticipants+1)
	for i := range many {
		many[i] = participant(fmt.Sprintf("1555%07d@s.whatsapp.net", i))
	}
	bad := map[string]node.Node{
		"no group":        node.New("iq", node.StrAttr("type", "result")),
		"a LID group":     groupAnswer([]node.Attr{node.StrAttr("addressing_mode", "lid")}, participant("123456789012345@lid")),
		"a LID member":    groupAnswer(nil, participant("123456789012345@lid")),
		"no jid":          groupAnswer(nil, node.New("participant")),
		"too many":        groupAnswer(nil, many...),
		"a group as user": groupAnswer(nil, participant("120363000000000002@g.us")),
	}
	for name, ans := range bad {
		if got, err := ParseGroupParticipants(ans); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, %v; want ErrMalformed", name, got, err)
		}
	}
}

func TestGroupMessage(t *testing.T) {
	g := jid.New("120363000000000001", jid.GroupServer)
	a := jid.JID{User: "15551000001", Device: 1, Server: jid.DefaultUserServer}
	b := jid.JID{User: "15551000002", Server: jid.DefaultUserServer}
	devices := []jid.JID{a, b}
	identity := []byte("identity")

	// Nobody lacks the key: the skmsg alone.
	m := GroupMessage("ID1", g, nil, []byte("sk"), devices, identity)
	if len(m.Children()) != 1 || m.Children()[0].Tag != "enc" {
		t.Fatalf("without parts: %v", m)
	}
	if ph, _ := m.Attr("phash"); ph != ParticipantHash(devices) {
		t.Errorf("phash %q, want the hash of every device", ph)
	}
	enc := m.Children()[0]
	if typ, _ := enc.Attr("type"); typ != "skmsg" {
		t.Errorf("enc type %q", typ)
	}

	// A pkmsg part brings <device-identity>; msg parts alone do not.
	for _, c := range []struct {
		typ      signal.MessageType
		identity bool
	}{{signal.TypeMsg, false}, {signal.TypePreKey, true}} {
		parts := []Part{{Device: a, Ciphertext: signal.Ciphertext{Type: signal.TypeMsg, Body: []byte("m")}},
			{Device: b, Ciphertext: signal.Ciphertext{Type: c.typ, Body: []byte("p")}}}
		m := GroupMessage("ID2", g, parts, []byte("sk"), devices, identity)
		tags := ""
		for _, ch := range m.Children() {
			tags += "<" + ch.Tag + ">"
		}
		want := "<participants><enc>"
		if c.identity {
			want = "<participants><device-identity><enc>"
		}
		to, _ := m.AttrJID("to")
		if tags != want || to != g {
			t.Errorf("%s part: children %s to %s, want %s to the group", c.typ, tags, to, want)
		}
		ps, _ := m.Child("participants")
		if len(ps.Children()) != 2 {
			t.Errorf("%d participants, want 2", len(ps.Children()))
		}
	}
}

func TestRetryMessage(t *testing.T) {
	g := jid.New("120363000000000001", jid.GroupServer)
	d := jid.JID{User: "15551000001", Device: 1, Server: jid.DefaultUserServer}
	for _, typ := range []signal.MessageType{signal.TypeMsg, signal.TypePreKey} {
		m := RetryMessage("ID", g, Part{Device: d, Ciphertext: signal.Ciphertext{Type: typ, Body: []byte("c")}}, 2, 1700000000, []byte("identity"))
		to, _ := m.AttrJID("to")
		p, _ := m.AttrJID("participant")
		t0, _ := m.AttrInt("t")
		enc, _ := m.Child("enc")
		count, _ := enc.AttrInt("count")
		encType, _ := enc.Attr("type")
		_, hasIdentity := m.Child("device-identity")
		if to != g || p != d || t0 != 1700000000 || count != 2 || encType != typ.String() || hasIdentity != (typ == signal.TypePreKey) {
			t.Errorf("%s: %v", typ, m)
		}
	}
	// 1:1: to the device, recipient only for one of our own devices
	contact := jid.New("15551000002", jid.DefaultUserServer)
	own := jid.JID{User: "15551000003", Device: 0, Server: jid.DefaultUserServer}
	for _, dev := range []jid.JID{{User: contact.User, Device: 2, Server: jid.DefaultUserServer}, own} {
		m := RetryMessage("ID", contact, Part{Device: dev, Ciphertext: signal.Ciphertext{Type: signal.TypeMsg, Body: []byte("c")}}, 1, 1700000000, nil)
		to, _ := m.AttrJID("to")
		rcpt, hasRecipient := m.AttrJID("recipient")
		_, hasParticipant := m.Attr("participant")
		fanout, _ := m.Attr("device_fanout")
		enc, _ := m.Child("enc")
		count, _ := enc.AttrInt("count")
		if to != dev || hasParticipant || fanout != "false" || count != 1 || hasRecipient != (dev.User != contact.User) ||
			(hasRecipient && rcpt != contact) {
			t.Errorf("1:1 to %s: %v", dev, m)
		}
	}
}

func TestParseRetryKeys(t *testing.T) {
	var ident, spk, pk [32]byte
	var sig [64]byte
	ident[0], spk[0], pk[0], sig[0] = 1, 2, 3, 4
	keys := func(typ byte, withKey bool) node.Node {
		children := []node.Node{node.New("type").WithBytes([]byte{typ}), node.New("identity").WithBytes(ident[:])}
		if withKey {
			children = append(children, node.New("key").WithChildren(node.New("id").WithBytes([]byte{0, 1, 2}), node.New("value").WithBytes(pk[:])))
		}
		children = append(children, node.New("skey").WithChildren(node.New("id").WithBytes([]byte{0, 0, 1}),
			node.New("value").WithBytes(spk[:]), node.New("signature").WithBytes(sig[:])), node.New("device-identity"))
		return node.New("keys").WithChildren(children...)
	}
	receipt := func(children ...node.Node) node.Node {
		return node.New("receipt", node.StrAttr("type", "retry")).WithChildren(
			append([]node.Node{node.New("retry"), node.New("registration").WithBytes([]byte{0, 0, 0x30, 0x39})}, children...)...)
	}
	if b, err := ParseRetryKeys(receipt()); b != nil || err != nil {
		t.Fatalf("without keys: %v, %v", b, err)
	}
	b, err := ParseRetryKeys(receipt(keys(5, true)))
	if err != nil || b.RegistrationID != 12345 || b.IdentityKey != ident || b.SignedPreKeyID != 1 || b.SignedPreKey != spk ||
		b.SignedPreKeySignature != sig || b.PreKey == nil || *b.PreKey != pk || b.PreKeyID != 0x102 {
		t.Fatalf("got %+v, %v", b, err)
	}
	if b, err := ParseRetryKeys(receipt(keys(5, false))); err != nil || b.PreKey != nil {
		t.Errorf("without a one-time prekey: %+v, %v", b, err)
	}
	if _, err := ParseRetryKeys(receipt(keys(6, true))); !errors.Is(err, ErrMalformed) {
		t.Errorf("type 06: %v", err)
	}
	noReg := node.New("receipt").WithChildren(keys(5, true))
	if _, err := ParseRetryKeys(noReg); !errors.Is(err, ErrMalformed) {
		t.Errorf("no registration: %v", err)
	}
}
