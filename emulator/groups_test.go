package emulator_test

import (
	"testing"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
)

// TestGroupInfoAndRefusals asks for groups' participants as a raw client
// and sends group messages the server refuses: from a non-member, without
// an skmsg.
func TestGroupInfoAndRefusals(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{ReceiptDeadline: -1})
	d := newTestDevice(t)
	linked := pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	contact, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	group, err := srv.AddGroup(contact.JID())
	if err != nil {
		t.Fatal(err)
	}
	errorCode := func(id string) string {
		t.Helper()
		e, _ := c.expectResult(id, "error").Child("error")
		code, _ := e.Attr("code")
		return code
	}

	c.send(e2e.GroupInfoQuery("g1", jid.New("120363999999999999", jid.GroupServer)))
	if code := errorCode("g1"); code != "404" {
		t.Errorf("an unknown group: error %s, want 404", code)
	}
	c.send(e2e.GroupInfoQuery("g2", group))
	if code := errorCode("g2"); code != "403" {
		t.Errorf("a group we are not in: error %s, want 403", code)
	}

	// Not a member (a client may not know yet that it was removed):
	// refused whole, nothing delivered, not a violation.
	ack := func(id string) string {
		t.Helper()
		a := c.expectTag("ack")
		if got, _ := a.Attr("id"); got != id {
			t.Fatalf("ack %v, want id %s", a, id)
		}
		code, _ := a.Attr("error")
		return code
	}
	c.send(e2e.GroupMessage("G1", group, nil, []byte("skmsg"), nil, nil))
	if code := ack("G1"); code != "479" {
		t.Errorf("a non-member's group message: ack error %q, want 479", code)
	}

	if err := srv.AddGroupMember(group, linked.JID.ToNonAD()); err != nil {
		t.Fatal(err)
	}
	c.send(e2e.GroupInfoQuery("g3", group))
	members, err := e2e.ParseGroupParticipants(c.expectResult("g3", "result"))
	if err != nil || len(members) != 2 || members[0] != contact.JID() || members[1] != linked.JID.ToNonAD() {
		t.Fatalf("participants %v, %v", members, err)
	}

	// No skmsg: refused.
	noSK := e2e.GroupMessage("G2", group, nil, []byte("skmsg"), nil, nil).WithChildren()
	c.send(noSK)
	if code := ack("G2"); code != "479" {
		t.Errorf("a group message without skmsg: ack error %q, want 479", code)
	}
	// An skmsg the members never got the sender key for: accepted, and
	// each member device (the contact's two, our own phone) fails to
	// decrypt it and asks again.
	c.send(e2e.GroupMessage("G3", group, nil, []byte("not a sender key message"), nil, nil))
	if code := ack("G3"); code != "" {
		t.Errorf("an skmsg without keys: ack error %q, want none", code)
	}
	for range 3 {
		r := c.expectTag("receipt")
		if typ, _ := r.Attr("type"); typ != "retry" || attrJID(r, "from") != group || attr(r, "id") != "G3" {
			t.Errorf("receipt %v, want a retry receipt from the group", r)
		}
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "the retry receipts counted", func(s emulator.Stats) bool { return s.CompanionRetryReceipts == 3 })
	if st.CompanionMessagesRefused != 2 || st.CompanionGroupMessages != 1 || st.CompanionDecryptFailures != 3 || st.CompanionRetryReceipts != 3 || len(st.Violations) != 1 {
		t.Errorf("stats: %d refused, %d group messages, %d decrypt failures, %d retry receipts, violations %v (want the missing skmsg)",
			st.CompanionMessagesRefused, st.CompanionGroupMessages, st.CompanionDecryptFailures, st.CompanionRetryReceipts, st.Violations)
	}
}
