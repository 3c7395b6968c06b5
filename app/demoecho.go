package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
)

// echoTimeout bounds the request of one echo to its account.
const echoTimeout = 5 * time.Second

// demoEcho plays the accounts' side of the demo's conversations: an account
// answers each text an emulated contact sends it with "echo: TEXT", and
// says hello in the demo group, through the real send paths, and the demo
// shows each once a device of the contact has decrypted it. narrate owns it; only the requests to the
// accounts (reply) run on goroutines of their own.
type demoEcho struct {
	emu   *emulator.Server
	send  api.Sender
	group jid.JID // the demo group: the contact and the accounts
	out   io.Writer
	// sent carries the echoes the accounts queued from reply to narrate;
	// pending keeps them by message id until they are shown or failed.
	sent    chan echoSent
	pending map[string]echoSent
}

// echoSent is an echo (or, group set, a group hello) an account queued.
type echoSent struct {
	account string
	contact *emulator.Contact
	id      string
	group   bool
}

func newDemoEcho(emu *emulator.Server, send api.Sender, group jid.JID, out io.Writer) *demoEcho {
	return &demoEcho{emu: emu, send: send, group: group, out: out, sent: make(chan echoSent), pending: map[string]echoSent{}}
}

// contactOf returns the emulated contact that sent m, when m is a text of
// a 1:1 chat with it: the messages an account echoes.
func (ec *demoEcho) contactOf(m *events.Message) (*emulator.Contact, bool) {
	if m == nil || m.FromMe || m.Type != "text" || m.Text == "" || m.Chat != m.Sender {
		return nil, false
	}
	j, err := jid.Parse(m.Sender)
	if err != nil {
		return nil, false
	}
	return ec.emu.Contact(j)
}

// reply asks account to send the echo of m to c, then a hello to the
// demo group. The idempotency keys are derived from m's id: a message
// delivered again (the receive path delivers at least once) names the
// same keys, and the account sends nothing more.
func (ec *demoEcho) reply(ctx context.Context, account string, c *emulator.Contact, m *events.Message) {
	ec.queue(ctx, account, c, false, api.OutgoingText{To: c.JID(), Text: "echo: " + m.Text, Key: "echo-" + m.ID})
	ec.queue(ctx, account, c, true, api.OutgoingText{To: ec.group, Text: "hello from " + account, Key: "group-" + m.ID})
}

// queue asks account to send t, and hands what it queued to narrate.
func (ec *demoEcho) queue(ctx context.Context, account string, c *emulator.Contact, group bool, t api.OutgoingText) {
	sendCtx, cancel := context.WithTimeout(ctx, echoTimeout)
	defer cancel()
	res, err := ec.send.SendText(sendCtx, account, t)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			fmt.Fprintf(ec.out, "%s: the %s could not be sent: %v\n", account, ec.what(group), err)
		}
	case !res.Duplicate:
		select {
		case ec.sent <- echoSent{account: account, contact: c, id: res.ID, group: group}:
		case <-ctx.Done():
		}
	}
}

func (ec *demoEcho) what(group bool) string {
	if group {
		return "group hello"
	}
	return "echo"
}

// queued takes an echo reply queued, and shows it if its message_sent
// event came first.
func (ec *demoEcho) queued(s echoSent) {
	ec.pending[s.id] = s
	ec.show(s.id)
}

// show prints echo id once a device of its contact has decrypted it, as
// the contact's devices recorded it. Called on the echo's message_sent
// event: the emulated server hands a message to the contact's devices,
// which decrypt it at once, before it acks it.
func (ec *demoEcho) show(id string) {
	s, ok := ec.pending[id]
	if !ok {
		return
	}
	for _, d := range s.contact.Devices() {
		for _, r := range d.Received() {
			if r.ID != id {
				continue
			}
			delete(ec.pending, id)
			if s.group {
				fmt.Fprintf(ec.out, "%s → group %s, decrypted by %s (%s) with the account's sender key: %q\n",
					s.account, ec.group.User, s.contact.Name(), r.Type, r.Message.GetConversation())
				return
			}
			fmt.Fprintf(ec.out, "%s → +%s (%s): %q\n", s.account, s.contact.JID().User, s.contact.Name(), r.Message.GetConversation())
			return
		}
	}
}

// failed tells that echo id was not sent (its message_failed event).
func (ec *demoEcho) failed(id, reason string) {
	if s, ok := ec.pending[id]; ok {
		delete(ec.pending, id)
		fmt.Fprintf(ec.out, "%s: the %s was not sent: %s\n", s.account, ec.what(s.group), reason)
	}
}
