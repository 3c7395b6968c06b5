package emulator

import (
	"context"
	"fmt"
	"sync"
)

// Stats is a snapshot of the server's counters. Its JSON form is the body of
// GET /stats; the key names are a contract with tools outside this
// repository and must not change.
type Stats struct {
	// Handshakes counts Noise handshakes that completed (ClientFinish
	// decrypted), registration and login alike.
	Handshakes int64 `json:"handshakes"`
	// Registrations counts registration payloads accepted (signed prekey
	// verified); each one was answered with pair-device.
	Registrations int64 `json:"registrations"`
	// Pairings counts devices paired: pair-device-sign verified, 515 sent.
	Pairings int64 `json:"pairings"`
	// Logins counts login payloads answered with <success/>.
	Logins int64 `json:"logins"`
	// LoginsRejected counts login payloads answered with <failure/>.
	LoginsRejected int64 `json:"logins_rejected"`
	// ActiveConnections is the number of open connections past the handshake
	// (registration and logged-in sessions).
	ActiveConnections int64 `json:"active_connections"`
	// MaxConnectionsPerDevice is the largest number of simultaneous logged-in
	// connections ever seen for one device, not counting a connection
	// already closed by either side. A well-behaved fleet keeps it at most 1.
	MaxConnectionsPerDevice int64 `json:"max_connections_per_device"`
	// Pings counts keepalive IQs answered (xmlns w:p); pings dropped by the
	// drop-pongs fault are not counted.
	Pings int64 `json:"pings"`

	// The keys below count day-one traffic (DayOne) and prekeys.

	// StanzasPushed counts ackable stanzas (message, receipt, notification,
	// call) the server pushed for the first time; redeliveries are counted
	// in Redeliveries instead.
	StanzasPushed int64 `json:"stanzas_pushed"`
	// AcksOK counts acks that matched a pending stanza exactly and settled
	// it.
	AcksOK int64 `json:"acks_ok"`
	// AcksMalformed counts acks that did not (unknown id, wrong class or to,
	// a missing or extra attribute, content, an ack for a stanza that takes
	// none); each one is also listed in Violations.
	AcksMalformed int64 `json:"acks_malformed"`
	// AckDeadlineKills counts streams the server ended because a pushed
	// stanza stayed unacked, or a server ping unanswered, past its deadline.
	AckDeadlineKills int64 `json:"ack_deadline_kills"`
	// Redeliveries counts stanzas sent again, first thing after <success>,
	// because an earlier connection of the device left them unacked.
	Redeliveries int64 `json:"redeliveries"`
	// ServerPingsSent counts urn:xmpp:ping IQs the server sent.
	ServerPingsSent int64 `json:"server_pings_sent"`
	// ServerPingsAnswered counts correct answers to them.
	ServerPingsAnswered int64 `json:"server_pings_answered"`
	// PrekeyUploads counts prekey uploads the server accepted.
	PrekeyUploads int64 `json:"prekey_uploads"`
	// DevicesWithPrekeys is the number of paired devices whose prekey count
	// is at least 1 (a gauge).
	DevicesWithPrekeys int64 `json:"devices_with_prekeys"`

	// LinkCodeRequests counts companion_hello requests accepted (a code
	// shown on a companion).
	LinkCodeRequests int64 `json:"link_code_requests"`
	// LinkCodePairings counts devices paired by link code (also counted in
	// Pairings).
	LinkCodePairings int64 `json:"link_code_pairings"`
	// LinkCodeFailures counts link-code exchanges that failed: a malformed
	// or out-of-order link_code_companion_reg, a wrong code typed on the
	// phone, a phone hello the server could not build.
	LinkCodeFailures int64 `json:"link_code_failures"`

	// The keys below count the 1:1 messages our companions send (route.go).

	// CompanionMessages counts companions' messages the server accepted
	// and routed (one per message, whatever the number of devices).
	CompanionMessages int64 `json:"companion_messages"`
	// CompanionMessagesRefused counts companions' messages refused whole
	// (ack with an error): malformed, or a pkmsg without a valid device
	// identity.
	CompanionMessagesRefused int64 `json:"companion_messages_refused"`
	// CompanionDecryptFailures counts ciphertexts of companions' messages
	// an emulated device (a contact's, an account's phone) could not
	// decrypt: encrypted for another identity or session. No receipt
	// follows.
	CompanionDecryptFailures int64 `json:"companion_decrypt_failures"`
	// CompanionGroupMessages counts companions' group messages the server
	// accepted and routed (also in CompanionMessages).
	CompanionGroupMessages int64 `json:"companion_group_messages"`
	// CompanionRetryReceipts counts retry receipts emulated devices sent
	// companions for group messages they could not decrypt.
	CompanionRetryReceipts int64 `json:"companion_retry_receipts"`
	// CompanionRetryAnswers counts companions' answers to those retry
	// receipts that the server routed.
	CompanionRetryAnswers int64 `json:"companion_retry_answers"`

	// Provisioned counts devices recorded as paired by Provision (load
	// runs), not counted in Pairings.
	Provisioned int64 `json:"provisioned"`

	// The keys below count the conversations of emulated contacts
	// (contact*.go): what they sent to our devices and what those devices
	// made of it.

	// Contacts is the number of emulated contacts (AddContact).
	Contacts int64 `json:"contacts"`
	// ContactMessages counts messages contacts (and accounts' phones, for
	// own-device sync) sent to an account: one per send, whatever the
	// number of recipient devices.
	ContactMessages int64 `json:"contact_messages"`
	// MessagesRouted counts the <message> stanzas those sends queued, one
	// per recipient device (day-one's messages are counted in
	// StanzasPushed instead).
	MessagesRouted int64 `json:"messages_routed"`
	// Receipts counts the first delivery (or read) receipt of each routed
	// message from its recipient device. Routed messages include day-one's
	// (all but its garbage share), here and in the counters below.
	Receipts int64 `json:"receipts"`
	// ReceiptsOverdue counts routed messages whose receipt had not come
	// ReceiptDeadline after they were queued; ReceiptsLate those of them
	// whose receipt came afterwards.
	ReceiptsOverdue int64 `json:"receipts_overdue"`
	ReceiptsLate    int64 `json:"receipts_late"`
	// RetryReceipts counts retry receipts for routed messages: the
	// recipient device could not decrypt.
	RetryReceipts int64 `json:"retry_receipts"`
	// DecryptFailures counts routed messages (per recipient device) that
	// drew at least one retry receipt.
	DecryptFailures int64 `json:"decrypt_failures"`
	// Resends counts routed messages encrypted again and sent once more to
	// answer a retry receipt.
	Resends int64 `json:"resends"`
	// MessagesUndelivered counts routed messages given up: a retry receipt
	// beyond the retry limit, or one the sender could not answer.
	MessagesUndelivered int64 `json:"messages_undelivered"`

	// Violations lists what clients sent that was malformed or out of order,
	// oldest first (at most Options.MaxViolations entries). Never null.
	Violations []string `json:"violations"`
}

// stats is the live counterpart of Stats. Every change wakes the waiters of
// WaitFor.
type stats struct {
	mu      sync.Mutex
	s       Stats
	dropped int64         // violations beyond the cap
	max     int           // cap of s.Violations
	changed chan struct{} // closed and replaced on every change
}

func newStats(maxViolations int) *stats {
	return &stats{max: maxViolations, changed: make(chan struct{}), s: Stats{Violations: []string{}}}
}

// update applies fn under the lock and wakes the waiters.
func (st *stats) update(fn func(s *Stats)) {
	st.mu.Lock()
	fn(&st.s)
	close(st.changed)
	st.changed = make(chan struct{})
	st.mu.Unlock()
}

func (st *stats) add(field func(s *Stats) *int64, n int64) {
	st.update(func(s *Stats) { *field(s) += n })
}

// deviceConnections records that a device now has n logged-in connections.
func (st *stats) deviceConnections(n int) {
	st.update(func(s *Stats) { s.MaxConnectionsPerDevice = max(s.MaxConnectionsPerDevice, int64(n)) })
}

func (st *stats) violation(msg string) { st.violationWith(msg, nil) }

// violationWith lists a violation and applies fn (a counter that goes with
// it) in the same update, so a waiter sees both or neither.
func (st *stats) violationWith(msg string, fn func(s *Stats)) {
	st.update(func(s *Stats) {
		if fn != nil {
			fn(s)
		}
		if len(s.Violations) < st.max {
			s.Violations = append(s.Violations, msg)
			return
		}
		st.dropped++
		if st.max > 0 {
			s.Violations[st.max-1] = fmt.Sprintf("… and %d more violations", st.dropped+1)
		}
	})
}

// snapshot returns a copy of the counters and the channel that will be closed
// on the next change.
func (st *stats) snapshot() (Stats, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	s.Violations = append([]string{}, st.s.Violations...)
	return s, st.changed
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st, _ := s.stats.snapshot()
	return st
}

// WaitFor blocks until cond holds for the counters and returns the snapshot
// that satisfied it, or returns ctx's error (with the last snapshot) when ctx
// ends first. cond runs on snapshots, without locks held. Use a context with
// a deadline: tests wait for events this way instead of sleeping.
func (s *Server) WaitFor(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		st, changed := s.stats.snapshot()
		if cond(st) {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, fmt.Errorf("emulator: wait for stats: %w", context.Cause(ctx))
		}
	}
}
