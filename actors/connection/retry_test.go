package connection

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// The messages kept for retry receipts stay within their count and
// byte bounds, the oldest going first.
func TestRememberSendBounds(t *testing.T) {
	var c conn
	for i := range maxRecentSends + 10 {
		c.recentSent.remember(&outgoing{id: fmt.Sprint("m", i), text: "short"})
	}
	r := &c.recentSent
	if len(r.order) != maxRecentSends || len(r.byID) != maxRecentSends || r.byID["m9"] != nil || r.byID["m10"] == nil {
		t.Fatalf("%d kept (%d by id); m9 kept %v, m10 kept %v", len(r.order), len(r.byID), r.byID["m9"] != nil, r.byID["m10"] != nil)
	}
	big := strings.Repeat("x", MaxTextLen)
	for i := range 8 {
		c.recentSent.remember(&outgoing{id: fmt.Sprint("big", i), text: big})
	}
	total := 0
	for _, id := range r.order {
		total += len(r.byID[id].out.text)
	}
	if total != r.bytes || r.bytes > maxRecentBytes || r.byID["big7"] == nil || r.byID["big0"] != nil {
		t.Fatalf("%d bytes kept (counted %d, bound %d); newest kept %v, oldest big kept %v",
			total, r.bytes, maxRecentBytes, r.byID["big7"] != nil, r.byID["big0"] != nil)
	}
}

// Which retry receipts are answered: for a 1:1 message, one from a device
// of the recipient, or from our own naming the chat in recipient; for a
// group message, one from a member device; at most maxRetryReceipts per
// device and message. (Without a connection the answer is dropped once
// accepted; what is counted is that it was accepted.)
func TestRetryReceiptAccepted(t *testing.T) {
	own := jid.JID{User: "15550000001", Device: 3, Server: jid.DefaultUserServer}
	contact := jid.New("15551000001", jid.DefaultUserServer)
	group := jid.New("120363000000000001", jid.GroupServer)
	c := &conn{dev: &store.Device{JID: own.String()}, cur: &attempt{}, log: quietLogger()}
	c.recentSent.remember(&outgoing{id: "D1", to: contact, text: "one"})
	c.recentSent.remember(&outgoing{id: "G1", to: group, text: "two"})
	dev := func(user string, device uint16) jid.JID {
		return jid.JID{User: user, Device: device, Server: jid.DefaultUserServer}
	}
	receipt := func(id string, count int, attrs ...node.Attr) node.Node {
		return node.New("receipt", append(attrs, node.StrAttr("id", id), node.StrAttr("type", "retry"))...).WithChildren(
			node.New("retry", node.IntAttr("count", int64(count)), node.StrAttr("id", id), node.IntAttr("t", 1), node.StrAttr("v", "1")),
			node.New("registration").WithBytes([]byte{0, 0, 0, 1}))
	}
	for _, tc := range []struct {
		name   string
		n      node.Node
		id     string
		device jid.JID
		want   int
	}{
		{"the recipient's device", receipt("D1", 1, node.JIDAttr("from", dev(contact.User, 2))), "D1", dev(contact.User, 2), 1},
		{"our phone naming the chat", receipt("D1", 1, node.JIDAttr("from", dev(own.User, 0)), node.JIDAttr("recipient", contact)), "D1", dev(own.User, 0), 1},
		{"our phone naming no chat", receipt("D1", 1, node.JIDAttr("from", dev(own.User, 1))), "D1", dev(own.User, 1), 0},
		{"another user's device", receipt("D1", 1, node.JIDAttr("from", dev("15559999999", 0))), "D1", dev("15559999999", 0), 0},
		{"another user's device naming the chat", receipt("D1", 1, node.JIDAttr("from", dev("15559999999", 1)), node.JIDAttr("recipient", contact)), "D1", dev("15559999999", 1), 0},
		{"another chat named", receipt("D1", 1, node.JIDAttr("from", dev(own.User, 4)), node.JIDAttr("recipient", jid.New("15559999999", jid.DefaultUserServer))), "D1", dev(own.User, 4), 0},
		{"a group's form for a 1:1 message", receipt("D1", 1, node.JIDAttr("from", group), node.JIDAttr("participant", dev(contact.User, 5))), "D1", dev(contact.User, 5), 0},
		{"a member device", receipt("G1", 1, node.JIDAttr("from", group), node.JIDAttr("participant", dev(contact.User, 2))), "G1", dev(contact.User, 2), 1},
		{"a count out of range", receipt("D1", maxRetryReceipts+1, node.JIDAttr("from", dev(contact.User, 6))), "D1", dev(contact.User, 6), 0},
		{"an unknown message", receipt("X1", 1, node.JIDAttr("from", dev(contact.User, 2))), "X1", dev(contact.User, 2), 0},
	} {
		c.onRetryReceipt(nil, tc.n)
		if sent := c.recentSent.byID[tc.id]; tc.want > 0 && (sent == nil || sent.answered[tc.device] != tc.want) ||
			tc.want == 0 && sent != nil && sent.answered[tc.device] != 0 {
			t.Errorf("%s: not answered as wanted (%d)", tc.name, tc.want)
		}
	}
	d := dev(contact.User, 2)
	for count := 2; count <= maxRetryReceipts+2; count++ {
		c.onRetryReceipt(nil, receipt("D1", min(count, maxRetryReceipts), node.JIDAttr("from", d)))
	}
	if n := c.recentSent.byID["D1"].answered[d]; n != maxRetryReceipts {
		t.Errorf("a device's receipts answered %d times, want %d", n, maxRetryReceipts)
	}
}
