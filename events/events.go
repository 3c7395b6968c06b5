package events

import (
	"log/slog"
	"time"
)

// State is the state of one account as the API reports it.
type State string

// The account states. Their names are part of the HTTP API.
const (
	StateConnecting State = "connecting" // dialing or handshaking
	StatePairing    State = "pairing"    // showing QR codes, waiting for a scan
	StateUnpaired   State = "unpaired"   // QR codes ran out; waiting for POST /pair
	StateConnected  State = "connected"  // logged in and kept alive
	StateBackoff    State = "backoff"    // waiting before the next reconnect
	StateLoggedOut  State = "logged_out" // the phone unlinked the device
	StateStopped    State = "stopped"    // not running here (removed, conflict, or another instance owns it)
)

// States lists every account state, in the order of the HTTP API. The
// accounts gauge reports each of them (zero included, so a dashboard never
// sees a series disappear), the health line counts each, and the dashboard
// sums the accounts in this order.
var States = []State{StateConnecting, StatePairing, StateUnpaired, StateConnected, StateBackoff, StateLoggedOut, StateStopped}

// Kind says what happened.
type Kind string

// The event kinds. Their names are part of the wire form (Wire: webhooks,
// GET /api/events) and of the webhook endpoints' event filters.
const (
	KindState         Kind = "state"          // a plain state change
	KindQR            Kind = "qr"             // a new QR code is showing (QR set)
	KindLinkCode      Kind = "link_code"      // a link code is showing (LinkCode set)
	KindPaired        Kind = "paired"         // pairing succeeded (JID set)
	KindConnected     Kind = "connected"      // login succeeded (JID set)
	KindDisconnected  Kind = "disconnected"   // the connection ended (Error set)
	KindReconnect     Kind = "reconnect"      // a reconnect attempt starts (Attempt set)
	KindLoggedOut     Kind = "logged_out"     // the device was unlinked and wiped
	KindRestart       Kind = "restart"        // the account's actor was restarted after a panic
	KindAlarm         Kind = "alarm"          // something an operator must look at (Error set)
	KindLeaseAcquired Kind = "lease_acquired" // this instance now owns the account
	KindLeaseLost     Kind = "lease_lost"     // this instance no longer owns the account
	// KindMessage: a message was received and decrypted (Message set).
	KindMessage Kind = "message"
	// KindReceipt: the server pushed a receipt for messages we sent
	// (Receipt set).
	KindReceipt Kind = "receipt"
	// KindIdentityChanged: a contact's device presented an identity key
	// other than the one recorded (Peer set); the new key is recorded
	// (trust on first use) and the conversation goes on.
	KindIdentityChanged Kind = "identity_changed"
	// KindMessageSent: the server acknowledged a message we sent
	// (MessageID, Chat set; Time is the server's).
	KindMessageSent Kind = "message_sent"
	// KindMessageFailed: a message we were asked to send was not sent, or
	// not acknowledged (MessageID, Chat, Error set).
	KindMessageFailed Kind = "message_failed"
)

// Kinds lists every event kind: the values metrics count by and webhook
// endpoints filter on.
var Kinds = []Kind{KindState, KindQR, KindLinkCode, KindPaired, KindConnected, KindDisconnected, KindReconnect, KindLoggedOut, KindRestart, KindAlarm, KindLeaseAcquired, KindLeaseLost,
	KindMessage, KindReceipt, KindIdentityChanged, KindMessageSent, KindMessageFailed}

// Alarm names the condition a KindAlarm event raises. The names are part of
// the HTTP API and of the wire form (Wire).
type Alarm string

// The alarms.
const (
	AlarmReplaced       Alarm = "replaced"        // another connection took the session over
	AlarmRefused        Alarm = "refused"         // the server refused the login for good (failure 400, 409, …)
	AlarmBanned         Alarm = "banned"          // the account is locked or banned (failure 403, 406); the device was wiped
	AlarmClientOutdated Alarm = "client_outdated" // the server refuses our client version and no newer one can be had
	AlarmDevice         Alarm = "device"          // the stored device cannot be used to log in (a corrupt JID or key)
	AlarmMassLogout     Alarm = "mass_logout"     // too many accounts were logged out at once; their wipes wait for an operator
)

// Reason says why a connection ended, in a bounded set of words: the
// label values of wafleet_disconnects_total and the reason of the
// transition's log line. Error has the details.
type Reason string

// The reasons a connection ends.
const (
	ReasonNetwork           Reason = "network"            // the dial, the handshake or the socket failed
	ReasonKeepaliveTimeout  Reason = "keepalive_timeout"  // keepalive pings went unanswered
	ReasonWriteQueueFull    Reason = "write_queue_full"   // too many frames waited to be written
	ReasonStreamEnd         Reason = "stream_end"         // the server closed the stream without a reason
	ReasonUnacked           Reason = "unacked"            // the server ended the stream for an unacknowledged stanza
	ReasonServerError       Reason = "server_error"       // a transient server-side error (5xx, other stream errors)
	ReasonServerRestart     Reason = "server_restart"     // the server asked for a new connection (515)
	ReasonLoggedOut         Reason = "logged_out"         // the device was unlinked (by the phone or an operator)
	ReasonBanned            Reason = "banned"             // the account is locked or banned
	ReasonTemporarilyBanned Reason = "temporarily_banned" // a temporary ban; the account waits for its end
	ReasonOutdated          Reason = "outdated"           // the server refuses the client version
	ReasonReplaced          Reason = "replaced"           // another connection took the session over
	ReasonRefused           Reason = "refused"            // the server refused the login for good, or the device is unusable
	ReasonPairingExpired    Reason = "pairing_expired"    // the QR codes ran out without a scan
	ReasonHandedOver        Reason = "handed_over"        // the lease is gone: another instance runs the account
)

// Reasons lists every Reason: the values wafleet_disconnects_total counts
// by (each exported from the start, zero included).
var Reasons = []Reason{ReasonNetwork, ReasonKeepaliveTimeout, ReasonWriteQueueFull, ReasonStreamEnd, ReasonUnacked,
	ReasonServerError, ReasonServerRestart, ReasonLoggedOut, ReasonBanned, ReasonTemporarilyBanned, ReasonOutdated,
	ReasonReplaced, ReasonRefused, ReasonPairingExpired, ReasonHandedOver}

// Event is one thing that happened to one account. Events are values: a
// publisher never changes an event after publishing it.
type Event struct {
	Account string
	Kind    Kind
	// State is the account's state after the event.
	State State
	// From is the account's state before the event, when its publisher
	// knows it (the connection actor always does); equal to State for an
	// event that changes no state.
	From State
	// Reason is set on the event of a connection's end: why it ended.
	Reason Reason
	// JID is the device JID once known.
	JID string
	// QR is the QR code content for KindQR. It contains the ADV secret: it
	// is never logged (see LogValue) and only shown to the operator.
	QR string
	// QRIndex and QRCount say which code of the pairing's batch QR is
	// (from 1) and how many the batch has; QRExpires is when the next
	// code replaces it or the pairing gives up. KindQR only.
	QRIndex, QRCount int
	QRExpires        time.Time
	// LinkCode is the code to type on the phone for KindLinkCode
	// ("ABCD-EFGH"; pairing by phone number), LinkCodeExpires when it stops
	// working. It is a secret like QR: never logged, never in the wire form.
	LinkCode        string
	LinkCodeExpires time.Time
	// Error describes the failure for KindDisconnected, KindAlarm and
	// failed transitions. It never contains secrets.
	Error string
	// Alarm names what KindAlarm is about (one of the Alarm constants),
	// for tools that route alarms; Error says it in words.
	Alarm Alarm
	// Attempt is the reconnect attempt number for KindReconnect.
	Attempt int
	// MessageID and Chat name a message and the chat it went to
	// (KindMessageSent, KindMessageFailed); for KindMessageSent, Time is
	// the server's timestamp.
	MessageID, Chat string
	// Delay is the backoff delay when State is StateBackoff.
	Delay time.Duration
	// Message is the received message of KindMessage.
	Message *Message
	// Receipt is the receipt of KindReceipt.
	Receipt *Receipt
	// Peer is the contact device whose identity key changed
	// (KindIdentityChanged): its JID, "USER[:DEVICE]@SERVER".
	Peer string
	// Journaled says that the publisher already wrote the event to the
	// outbox (a message event, written before the Signal state it
	// changed): the journal does not append it again.
	Journaled bool
	Time      time.Time
}

// Message is a received message (KindMessage). Its plaintext is never
// logged (Event.LogValue leaves it out).
type Message struct {
	// ID is the message id: the key to deduplicate by, since a message is
	// delivered at least once (a crash between writing the event and
	// acknowledging the stanza repeats it).
	ID string
	// Chat is the conversation: the contact's JID for a 1:1 message, the
	// group's for a group message, the other party's for a message our own
	// phone sent (FromMe).
	Chat string
	// Sender is the sending user's JID without device; SenderDevice its
	// device (0: the phone).
	Sender       string
	SenderDevice uint16
	// FromMe: our own account sent it, from another of its devices.
	FromMe bool
	// Timestamp is the server's time of the message (its t attribute).
	Timestamp time.Time
	// PushName is the sender's display name, as the server passes it.
	PushName string
	// Type is what the message is: "text", "reaction", "protocol", a media
	// kind ("image", "video", "audio", "document", "sticker", "contact",
	// "location", "poll", …) or "unknown" (MessageTypes).
	Type string
	// Text is the text of a text message, the emoji of a reaction.
	Text string
	// Summary describes a message that is not text in a few words, e.g.
	// "revoke" or "message_edit" for a protocol message; empty for text.
	Summary string
	// RefID is the id of the message a reaction, revoke or edit is about.
	RefID string
	// Raw is the serialized Message protobuf, when the operator enabled
	// raw messages (it carries the plaintext).
	Raw []byte
}

// MessageTypes lists the values of Message.Type.
var MessageTypes = []string{"text", "reaction", "protocol", "image", "contact", "location", "document", "audio",
	"video", "call", "sticker", "group_invite", "list", "buttons", "poll", "edited", "view_once", "event", "unknown"}

// Receipt is a receipt the server pushed (KindReceipt): the contact's
// devices received, read or played our messages.
type Receipt struct {
	// IDs are the ids of the messages the receipt is for.
	IDs []string
	// Chat is the conversation; Sender the user whose device sent the
	// receipt (the participant in a group) and SenderDevice its device.
	Chat         string
	Sender       string
	SenderDevice uint16
	// Type is the receipt's type: "delivery" (no type attribute), "read",
	// "played", "sender", "inactive", "read-self", … as the server names it.
	Type      string
	Timestamp time.Time
}

// LogValue renders the event for slog without the QR content, link code or
// message text.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("account", e.Account),
		slog.String("kind", string(e.Kind)),
		slog.String("state", string(e.State)),
	}
	if e.From != "" {
		attrs = append(attrs, slog.String("from", string(e.From)))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(e.Reason)))
	}
	if e.JID != "" {
		attrs = append(attrs, slog.String("jid", e.JID))
	}
	if e.Alarm != "" {
		attrs = append(attrs, slog.String("alarm", string(e.Alarm)))
	}
	if e.Error != "" {
		attrs = append(attrs, slog.String("error", e.Error))
	}
	if e.Attempt != 0 {
		attrs = append(attrs, slog.Int("attempt", e.Attempt))
	}
	if e.Delay != 0 {
		attrs = append(attrs, slog.Duration("delay", e.Delay))
	}
	if m := e.Message; m != nil { // never the text nor the raw message
		attrs = append(attrs, slog.String("message_id", m.ID), slog.String("chat", m.Chat), slog.String("type", m.Type))
	}
	if r := e.Receipt; r != nil {
		attrs = append(attrs, slog.String("receipt_type", r.Type), slog.Int("receipt_ids", len(r.IDs)))
	}
	if e.Peer != "" {
		attrs = append(attrs, slog.String("peer", e.Peer))
	}
	return slog.GroupValue(attrs...)
}

// Publisher accepts events. Implementations never block.
type Publisher interface {
	Publish(Event)
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(Event)

// Publish calls f(e).
func (f PublisherFunc) Publish(e Event) { f(e) }
