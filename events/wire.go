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
	Account  string    `json:"account"`
	Instance string    `json:"instance,omitempty"` // the instance the event happened on
	Kind     Kind      `json:"kind"`
	State    State     `json:"state,omitempty"`
	From     State     `json:"from,omitempty"`   // the state before the event
	Reason   Reason    `json:"reason,omitempty"` // why the connection ended
	JID      string    `json:"jid,omitempty"`
	Error    string    `json:"error,omitempty"`
	Alarm    Alarm     `json:"alarm,omitempty"`
	Attempt  int       `json:"attempt,omitempty"`
	DelayMS  int64     `json:"delay_ms,omitempty"`
	Time     time.Time `json:"time"`
}

// ToWire returns e's wire form, as it happened on instance; a zero Time
// becomes now.
func ToWire(e Event, instance string) Wire {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	return Wire{
		Account: e.Account, Instance: instance, Kind: e.Kind, State: e.State, From: e.From, Reason: e.Reason, JID: e.JID,
		Error: e.Error, Alarm: e.Alarm, Attempt: e.Attempt, DelayMS: e.Delay.Milliseconds(),
		Time: t.UTC(),
	}
}

// Marshal returns the JSON of e's wire form (no QR content).
func Marshal(e Event, instance string) []byte {
	b, err := json.Marshal(ToWire(e, instance))
	if err != nil {
		panic("events: marshal: " + err.Error()) // strings, numbers and a time: cannot fail
	}
	return b
}
