package events

import (
	"encoding/json"
	"time"
)

// Wire is the one JSON form of an event that leaves the process: the body
// of every outbox entry, hence of every webhook delivery and of every
// server-sent event of GET /api/events. It never holds the QR content (it
// carries the ADV secret) nor the link code: a "qr" or "link_code" event
// says that a new code is showing, and the account's view (or its qr.png)
// has the code. Field names are part of the webhook and GET /api/events
// contract.
type Wire struct {
	Account  string `json:"account"`
	Instance string `json:"instance,omitempty"` // the instance the event happened on
	Kind     Kind   `json:"kind"`
	State    State  `json:"state,omitempty"`
	From     State  `json:"from,omitempty"`   // the state before the event
	Reason   Reason `json:"reason,omitempty"` // why the connection ended
	JID      string `json:"jid,omitempty"`
	Error    string `json:"error,omitempty"`
	Alarm    Alarm  `json:"alarm,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
	DelayMS  int64  `json:"delay_ms,omitempty"`
	// Message is the message of a "message" event.
	Message *WireMessage `json:"message,omitempty"`
	// Receipt is the receipt of a "receipt" event.
	Receipt *WireReceipt `json:"receipt,omitempty"`
	// Peer is the contact device of an "identity_changed" event.
	Peer string `json:"peer,omitempty"`
	// MessageID and Chat: message_sent and message_failed.
	MessageID string    `json:"message_id,omitempty"`
	Chat      string    `json:"chat,omitempty"`
	Time      time.Time `json:"time"`
}

// WireMessage is Message's wire form.
type WireMessage struct {
	ID           string    `json:"id"`
	Chat         string    `json:"chat"`
	Sender       string    `json:"sender"`
	SenderDevice uint16    `json:"sender_device"`
	FromMe       bool      `json:"from_me"`
	Timestamp    time.Time `json:"timestamp"`
	PushName     string    `json:"push_name,omitempty"`
	Type         string    `json:"type"`
	Text         string    `json:"text,omitempty"`
	Summary      string    `json:"summary,omitempty"`
	RefID        string    `json:"ref_id,omitempty"`
	Raw          []byte    `json:"raw,omitempty"` // base64, as encoding/json writes []byte
}

// WireReceipt is Receipt's wire form.
type WireReceipt struct {
	IDs          []string  `json:"ids"`
	Chat         string    `json:"chat"`
	Sender       string    `json:"sender,omitempty"`
	SenderDevice uint16    `json:"sender_device,omitempty"`
	Type         string    `json:"type"`
	Timestamp    time.Time `json:"timestamp"`
}

// ToWire returns e's wire form, as it happened on instance; a zero Time
// becomes now.
func ToWire(e Event, instance string) Wire {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	w := Wire{
		Account: e.Account, Instance: instance, Kind: e.Kind, State: e.State, From: e.From, Reason: e.Reason, JID: e.JID,
		Error: e.Error, Alarm: e.Alarm, Attempt: e.Attempt, DelayMS: e.Delay.Milliseconds(), Peer: e.Peer,
		MessageID: e.MessageID, Chat: e.Chat,
		Time: t.UTC(),
	}
	if m := e.Message; m != nil {
		w.Message = &WireMessage{
			ID: m.ID, Chat: m.Chat, Sender: m.Sender, SenderDevice: m.SenderDevice, FromMe: m.FromMe,
			Timestamp: m.Timestamp.UTC(), PushName: m.PushName, Type: m.Type, Text: m.Text, Summary: m.Summary,
			RefID: m.RefID, Raw: m.Raw,
		}
	}
	if r := e.Receipt; r != nil {
		w.Receipt = &WireReceipt{
			IDs: r.IDs, Chat: r.Chat, Sender: r.Sender, SenderDevice: r.SenderDevice, Type: r.Type,
			Timestamp: r.Timestamp.UTC(),
		}
	}
	return w
}

// Marshal returns the JSON of e's wire form (no QR content).
func Marshal(e Event, instance string) []byte {
	b, err := json.Marshal(ToWire(e, instance))
	if err != nil {
		panic("events: marshal: " + err.Error()) // strings, numbers and a time: cannot fail
	}
	return b
}
