// Package connection is the actor that keeps one WhatsApp account connected:
// it dials, runs the Noise handshake, logs in or hands an unlinked account to
// a pairing child, keeps the socket alive with pings, and reconnects with
// exponential backoff and full jitter when the connection drops.
//
// The supervisor spawns one connection actor per account at a time, each
// under a name of its own (see New); the HTTP API sends it *Pair,
// *Resume, *Logout, *ConfirmWipe and *RestoreArchived, and a config reload
// *Resume; package config takes its defaults (DefaultBackoff,
// DefaultKeepalive) from here.
//
// # Phases and states
//
// The actor's one internal state is its phase (phase.go); setPhase is the
// only place it changes and publishes it as an events.Event whose public
// State derives from the phase, with the state before (From) and, for the
// event of a connection's end, why it ended (Reason, reasonFor in end.go).
// The process logs each event once; setPhase itself logs only a phase
// change within one state, at debug level:
//
//	phase        state       what happens
//	loading      connecting  the device is loaded (wiped first if ordered), or
//	                         created with fresh keys the first time
//	dialing      connecting  the connect-rate limiter, the dial and the Noise
//	                         handshake (one Dialer call)
//	registering  connecting  handshake done with an unpaired device: waiting
//	                         for <pair-device>
//	pairing      pairing     the pairing child shows QR codes; this actor saves
//	                         the pairing and answers pair-success
//	logging_in   connecting  handshake done with a paired device: <success>,
//	                         the prekey count and upload, <active/>
//	active       connected   <active/> answered (or its wait over); keepalive
//	                         pings every 20–30 s
//	backoff      backoff     waiting Backoff.Next(attempt) before the next
//	                         attempt (or a temporary ban's expiry, or a newer
//	                         client version)
//	unpaired     unpaired    the QR codes ran out; no reconnect until *Pair
//	logged_out   logged_out  the device was unlinked and wiped (archived when
//	                         the server logged it out, deleted after the
//	                         operator's *Logout); a fresh pairing follows
//	                         (after a lock or ban only with Deps.AutoRepair or
//	                         *Pair)
//	stopped      stopped     the actor stopped, or the account must not
//	                         reconnect (conflict/replaced, failure 400/409/other
//	                         4xx, or no newer client version to be had: an
//	                         alarm; or a wipe held by the WipeGuard: the
//	                         mass_logout alarm); *Resume starts it again from
//	                         the device it holds, wiping nothing
//
// The diagram (begin is the start of every attempt: the actor's start, the
// backoff's timer, *Pair, *Resume, *Logout while offline, a 515, a newer
// client version, a restored archive):
//
//	                        begin
//	              ┌───────────┴────────────┐
//	              ▼                        ▼
//	           loading ───────────────► dialing ──┬──► registering ──► pairing ──► unpaired
//	                                              │         │
//	                                              │         ▼
//	                                              └──► logging_in ──► active
//
//	any phase ──► backoff | logged_out | stopped     (how an attempt ends; see below)
//	backoff | unpaired | logged_out | stopped ──► begin  (a timer or the operator)
//
// Every edge, as the code's table (transitions) has it; a test checks the
// two agree, and the connection tests fail on a change that is not here:
//
//	any          → loading      begin: no device in memory, or it must be wiped
//	any          → dialing      begin with the device in memory, or once it is loaded
//	dialing      → registering  handshake done; the device is unpaired
//	dialing      → logging_in   handshake done; the device is paired
//	registering  → pairing      <pair-device>: the pairing child shows QR codes
//	registering  → logging_in   <success> all the same (a warning: the device is not paired)
//	logging_in   → active       <active/> answered, or its wait over
//	pairing      → unpaired     the QR codes ran out
//	any          → backoff      the attempt failed: wait, then begin
//	any          → logged_out   the device was unlinked (server or *Logout)
//	any          → stopped      the actor stops, or the account must not reconnect
//
// The goal (what the operator asked: connect, log out) is kept apart from
// the phase: replaced, refused, banned and unpaired accounts do not want to
// connect; *Pair, *Resume and *Logout make them want it again. What lives
// for one attempt (the link, timers, the ids of requests in flight, the
// pairing child, close tokens) is one attempt value (attempt.go) that the
// next attempt replaces wholesale.
//
// # After <success> (PROTOCOL.md 9.8)
//
// The actor saves the LID the server names (and warns when our clock is off
// the server's), asks for the prekey count, uploads prekeys if needed,
// then sends <active/> and reports connected once it is answered (each
// step bounded by Keepalive.Timeout). From the first stanza on, every <message>,
// <receipt>, <notification> and <call> is acknowledged, shaped as the
// reference client shapes acks (ackFor); a real server ends the stream when
// one is missing and redelivers it on every reconnect. All but messages with
// encrypted content are acknowledged at once, in order; those are
// acknowledged once decrypted and stored (below).
// Server pings (urn:xmpp:ping, with or without type or id) are answered. A
// frame that does not decode is counted and skipped, but acked first when
// its tag and id decode (node.DecodePayloadHeader). One-time prekeys are
// uploaded when the server or the store holds fewer than 5 (812 the first
// time, 50 after), and again when an encrypt notification says the server
// runs low; they are stored before they are offered and marked uploaded
// once the server accepts them. A missed pong is tolerated: only
// Keepalive.Window without an answered ping ends the connection.
//
// # Receiving messages (receive.go, decrypt.go)
//
// A <message> with <enc> children goes to the store queue, which keeps
// stanzas in their order and the actor's mailbox free: its pkmsg, msg and
// skmsg parts are decrypted against the stored Signal state (Deps.Signal),
// unpadded and parsed (waproto's e2e.proto); a sender-key distribution
// inside is processed, a message our own phone sent is unwrapped. Then, in
// this order: everything the stanza changed (sessions, identities, sender
// keys, the consumed one-time prekey) and its message event's outbox
// record (Deps.Journal) are written in one store.SignalStore.ApplySignal
// (one bbolt transaction, whose fsync the messages of other accounts
// written at the same time share), and the actor sends the delivery
// receipt (type inactive, or sender for our own phone's messages) and the
// ack. Events are delivered at least once (on Redis, which appends the
// event before its script, a failure between the two repeats it when the
// stanza comes again, with the same message id); a redelivered message
// whose state was written decrypts as a repeat and is receipted without a
// second event. A message that does
// not decrypt changes nothing: it gets a retry receipt (with a fresh
// one-time prekey from the second on, at most four), then its ack, and is
// counted by reason (Observer.DecryptFailed); the log has one line of them
// per account and minute at most, the first failure in full and then a
// count by reason (faillog.go), so a flood costs no log. One the store fails on is
// left unacknowledged for the server to redeliver. A session record over
// store.MaxSignalRecordLen loses its oldest archived states. A receipt the
// server pushes becomes an events.KindReceipt event; an identity key that
// replaced another, an events.KindIdentityChanged event (trusted on first
// use, never fatal).
//
// # Sending messages (send.go, fanout.go)
//
// *SendText (POST /api/accounts/{id}/messages) is refused at once for bad
// input, an account not connected, or the account's send rate
// (Deps.SendRate, a token bucket: ErrRateLimited with the wait), unless
// its idempotency key already names a message (SendLog.SentWith, a store
// job): that answers as a duplicate, connected or not. A send
// with an idempotency key records it first (Deps.SendLog, a store job):
// a key already recorded answers with the first message's ID and sends
// nothing. The send is then queued; sends run one at a time. Each runs in
// a goroutine that asks the actor to write its IQs and waits for their
// answers (at most Keepalive.Timeout): the usync device lists of the
// recipient and of our own user, the prekey bundles of the devices without
// a stored session; then one store job reads the sessions, initiates the
// missing ones from their bundles (the peer's identity recorded, trust on
// first use), encrypts the padded Message for each device (a
// DeviceSentMessage for our own other devices) and writes every change
// with one ApplySignal before the actor writes the <message> (wire/e2e;
// <device-identity> with any pkmsg). The server's <ack class=message> is
// reported as message_sent (its t as the event's time) or message_failed
// (its error); a send the connection's end interrupts, queued, running or
// unacknowledged, as message_failed. A phash in the ack that differs from
// ours is logged: device lists are fetched for every send, nothing is
// cached.
//
// A device that could not decrypt one of our last messages (1:1 or group;
// maxRecentSends and maxRecentBytes of them, in memory) sends a retry
// receipt (retry.go): from the recipient's device, or from one of our own
// with recipient naming the chat. It is answered through the send queue
// at most maxRetryReceipts times per device and message: the message
// encrypted 1:1 for that device alone (a DeviceSentMessage for our own),
// with the receipt's count, <message to=DEVICE device_fanout=false>, on
// a new session when the receipt carries the device's keys or counts 2 or
// more (from a fetched bundle without keys). A retry's answer is not
// reported again.
//
// # Sending to groups (groupsend.go, groupkey.go)
//
// A SendText to a group JID asks the group's participants (the w:g2 group
// info IQ), then their devices and our own (usync, maxQueryUsers users a
// query, as for prekey bundles). Our sender key
// for the group lives in the Signal store as the sender key of our own
// device's address, together with the addresses of the devices that hold
// its distribution message (ownSenderKey; sealed and fenced like every
// session, and never read by the receive path). The devices that lack it
// get the distribution in a 1:1 part (pkmsg or msg, sessions made from
// bundles as above) of the same <message>, and every device the text
// once as an skmsg under the key; the key, its new holders and the
// sessions are written in one ApplySignal before the message goes out.
// When a holder is no longer among the group's devices (a member left, a
// device was unlinked), the key is replaced by a new one that every
// remaining device gets. A member device's retry receipt is answered as a
// 1:1 one's (above, <message to=GROUP participant=DEVICE>) with the text
// and the distribution; the device is then a holder. Events, idempotency
// and the rate limit are those of 1:1 sends.
//
// # How a connection ends (PROTOCOL.md 8.9, 9.3, 9.4, 9.8)
//
//	515 after pair-device-sign          expected: reconnect at once with the login payload
//	515 while connected                 reconnect at once (counted as a reconnect); another
//	                                    515 before a stable connection backs off
//	failure 401, conflict device_removed logged out: archive the device, publish logged_out,
//	                                    pair again with fresh keys
//	failure 403 (locked), 406 (banned)  archive, banned alarm with the server's message; pair
//	                                    again only with AutoRepair or *Pair
//	failure 402 (temporary ban)         backoff until its expire, then reconnect
//	failure 405 (client outdated)       wait for VersionSource: VersionUpdated reconnects,
//	                                    VersionUnavailable raises the client_outdated alarm
//	conflict replaced                   stopped + alarm
//	any end once Deps.LeaseHeld says    stopped, no alarm (a hand-over: the fleet closed
//	the lease is gone (but a logout)    the socket, or the new holder replaced it)
//	failure 400/409/other 4xx           stopped + alarm
//	stream error 401 without            backoff: the next login decides (never a wipe)
//	device_removed
//	stream error with <ack class id/>   backoff; logged and counted (Observer.StreamErrorAck)
//	failure 5xx, stream error 503/other backoff
//	read, write, dial, handshake and    backoff; last_error says what failed, e.g.
//	certificate errors, pings           "handshake: verify certificate: crypto: …"
//	unanswered for Keepalive.Window
//	QR codes ran out                    unpaired
//
// The backoff attempt counter resets once a connection has lived
// Backoff.StableAfter. Every dial first takes a slot of Deps.Limiter and
// waits for it on a timer (no goroutine waits for a slot).
//
// # Wipes: archive and guard
//
// A wipe the server causes (the four logged-out and banned lines above)
// archives the device with its prekeys (store.Store.Archive) instead of
// deleting it; *RestoreArchived puts an archived device back over an
// unpaired one and logs it in. Before such a wipe the actor asks
// Deps.WipeGuard, shared by the instance's accounts (wipeguard.go): when
// more than its share of the accounts were logged out within its window,
// the wipe is held: the account stops with the mass_logout alarm and keeps
// its device until *ConfirmWipe (the wipe then goes ahead) or a restart
// (the device is kept and logs in again).
//
// # Logout
//
// *Logout unlinks a paired account. When logged in, the actor sends
// <iq xmlns=md type=set><remove-companion-device jid=OWN reason=user_initiated/></iq>
// and waits for the answer (any answer, the server's stream error or its
// close, at most Keepalive.Timeout). When not connected it connects first
// to send it; only if that connection fails does it unlink locally (the
// phone then keeps listing the device until it is removed there). Either
// way it then closes the socket, deletes the Device from the store (the
// operator unlinked it: nothing is archived and the guard is not asked), publishes
// logged_out and starts a fresh pairing with new keys. An unpaired account
// has nothing to unlink: the request is refused.
//
// # Concurrency
//
// Receive never blocks: the store, the dial and handshake, reading and
// writing run in goroutines that report back with messages. Each attempt
// has a generation; its goroutines hold only their link (session and write
// queue), the actor's PID, the root context and the generation, and the
// actor drops every message of another generation. No goroutine waits
// for an idle connection's bytes: the session hands each frame over as it
// arrives (Session.Watch; on Linux wire reads a socket when epoll says it
// is ready, on a few goroutines shared by all connections), only copied
// and sent to the actor, which decodes it; the one writer runs only while
// frames wait in the bounded queue, each write bounded by the write
// deadline. *actor.Stopping
// and *actor.Restarting cancel the attempt and close the socket, which ends
// every goroutine but the store calls under way (each bounded by
// Deps.StoreTimeout; those queued behind them see the attempt cancelled and
// do nothing, but for the undo of a pairing save). The process waits for
// those (Deps.StoreCalls) before it closes the store.
//
// # Pairing and the store
//
// The actor is the one writer of its account's store entries: every store
// call runs off the actor's goroutine, one at a time in the order the actor
// asked for it (storeQueue), so nothing else needs a lock. The pairing
// child only verifies pair-success and hands over the paired Device with
// its reply (pairing.Finish); the actor then owns the transaction in the
// reference client's order: it saves the Device (one atomic Save), then
// writes pair-device-sign. A failed save is answered with a 500 error IQ
// and the connection backs off. If the reply is never written (or the
// attempt ends while the save runs), the pairing is undone
// (pairing.Restore, queued behind the save) and reported in last_error;
// an undo that fails is logged and says so in last_error too. If the actor
// stops while the reply's write is in flight, the saved pairing is kept:
// should the server not have received it, the next login fails with 401
// and the account pairs again.
//
// # Pairing by link code
//
// Pair{Phone} (and Deps.LinkPhone from the start) makes the next pairing
// use a link code instead of QR codes; it is accepted while QR codes show
// too, and starts the attempt over. The actor acks the server's
// link_code_companion_reg notification like any other and forwards it,
// and IQ answers it cannot match, to the pairing child. A link-code
// attempt that fails before pair-success (pairing.Failed) ends the
// connection and leaves the account unpaired with the reason in
// last_error, nothing stored; Pair starts again. The number is forgotten
// once paired: a later pairing (after a logout) uses QR unless asked.
package connection
