// Package emulator is a local WhatsApp-Web-like server and primary phone,
// with fault injection, for testing clients offline (in CI, in `manager
// demo`, in other packages' tests). It runs the server side of the same
// protocol code the client uses — package crypto (Noise responder,
// certificate issuing, the phone's ADV signing) and package wire (WebSocket
// frames, the server handshake, the transport, the node codec) — and imports
// nothing of actors, store or config. `manager emulator` (cmd/manager) wraps
// it as a process.
//
// # Server
//
// The chat endpoint is a WebSocket at ws://HOST:PORT/ws/chat (PROTOCOL.md
// 1–3). Each server owns a test root key and issues an intermediate and a
// leaf certificate for its Noise static key; clients must trust
// RootPublicKey instead of the real root. After the handshake:
//
//   - A registration payload (PROTOCOL.md 5.2) has its signed-prekey
//     signature checked; the server records the device's noise key and
//     identity, sends <pair-device> with 6 refs ("2@…") and closes the
//     connection when their lifetime (60 s + 5×20 s, Options.FirstRefTTL /
//     NextRefTTL) passes without a scan.
//   - A login payload (PROTOCOL.md 5.3) is accepted only for a paired device
//     whose handshake static key is the one recorded at pairing: <success t
//     lid/>; otherwise <failure reason="401"/> and close. A second login of a
//     connected device sends <conflict type="replaced"/> to the older
//     connection, and the overlap is counted in max_connections_per_device
//     (an older connection already closed, by its client or by the server
//     after ending its stream, as the TCP socket's state says on Linux, is
//     not an overlap, whether or not its reader has seen the close yet).
//   - After success it answers keepalive pings (xmlns w:p, with or without
//     <ping/>), the passive/active IQ, prekey count and upload, and a
//     companion's <remove-companion-device jid=OWN/> (result, then the
//     device is removed as by Phone.Unlink; naming another device is a
//     violation answered 403), the usync device-list query (usync.go:
//     an account's phone and companions, a contact's two devices), the
//     prekey-bundle fetch (keys.go, PreKeyBundle) and the group info query
//     (groups.go); any other get/set IQ gets <error code="501"
//     text="feature-not-implemented"/>.
//   - A companion's 1:1 <message> is routed (route.go): each <enc> to its
//     device — a contact's device or the account's phone decrypts it
//     (SignalDevice.Received), another companion gets it queued as
//     <message from=SENDER recipient=CHAT> — then <ack class=message t
//     [phash]/> and a delivery receipt from the chat's first device that
//     decrypted its part. A pkmsg without a valid <device-identity> is
//     refused whole (ack error 479); a device list that misses devices
//     gets the server's phash in the ack; a part an emulated device cannot
//     decrypt is counted (companion_decrypt_failures) and draws the
//     device's retry receipt <receipt from=DEVICE [recipient=CHAT, for the
//     sender's own phone] type=retry> (companion_retry_receipts), sent
//     and answered as for groups below: the answer, <message to=DEVICE
//     [recipient=CHAT] device_fanout=false><enc count=N/>, is decrypted
//     (companion_retry_answers) and gets the device's delivery receipt
//     (none from the sender's own phone).
//   - Groups (groups.go): Server.AddGroup makes a group of phone-number
//     users, AddGroupMember and RemoveGroupMember change it; the w:g2 group info query is
//     answered with its participants (404 for an unknown group, 403 for a
//     non-member). A companion's group <message> (an skmsg, with 1:1
//     parts carrying its sender key's distribution) goes to every member
//     device but the sender: an emulated device decrypts its part, learns
//     the key, decrypts the skmsg and answers with a delivery receipt
//     <receipt from=GROUP participant=DEVICE id t/>; an skmsg to a device
//     that never got the sender key fails there (counted), and the device
//     sends a retry receipt (companion_retry_receipts), whose answer
//     (<message to=GROUP participant=DEVICE><enc count=N/>) it decrypts
//     (companion_retry_answers); an answer it cannot decrypt either draws
//     the next retry receipt, from the second on with the device's keys
//     and a one-time prekey, up to 5. An emulated device consumes a
//     one-time prekey with the session it builds: a later pkmsg naming it
//     decrypts only as a repeat on that session. Another companion gets
//     the stanza queued. Stats: companion_group_messages.
//     Without day-one mode it sends nothing else but what waits in the
//     device's queue (contacts' messages, encrypt notifications, below),
//     and ignores acks of anything else.
//   - With Options.MinVersion set, a registration or login whose
//     userAgent.appVersion is older gets <failure reason="405"
//     location="emulator"/> and the socket closes (counted in
//     logins_rejected). GET /sw.js advertises LatestVersion.
//   - Anything malformed or out of order (bad header or handshake message,
//     undecodable frame or node, an IQ without id, a result the server never
//     asked for, server-only tags) is appended to Stats.Violations and the
//     connection is closed.
//
// # Day-one mode
//
// Options.DayOne (SetDayOne, POST /dayone, `manager emulator --day-one`)
// makes the server behave like the real one from a device's first login.
// After <success>, on one pusher goroutine per connection:
//
//  1. Redelivery: every stanza earlier connections of the device left
//     unacked is sent again first, same id and bytes, oldest first
//     (redeliveries). Unacked stanzas live per device in the registry: they
//     survive reconnects, not a restart of the emulator.
//  2. A burst of PushBurst (20) stanzas, then <ib><offline count=N/></ib>
//     (N = redelivered + burst).
//  3. Stanzas at PushRate (1/s, Poisson) per connection, and after every
//     fourth a stanza that takes no ack: <presence from type="available"/>
//     or <chatstate from><composing/></chatstate>.
//
// Pushed stanzas (ids unique per device: receipts "3EB0…" upper-case hex,
// messages "3A…" like a phone's, notifications and calls decimal),
// cycling through:
//
//	<message from=CONTACT:D id type="text" t notify><enc v="2" type="pkmsg">…</enc></message>
//	<message from=GROUP@g.us participant=CONTACT:D id type="text" t notify>[<enc type="pkmsg">distribution</enc>]<enc v="2" type="skmsg">…</enc></message>
//	<message from=OWN@s.whatsapp.net recipient=PEER@s.whatsapp.net id type="text" t><enc v="2" type="pkmsg">…</enc></message>
//	<receipt from=PEER id t/>   <receipt from=PEER id type="read" t/>
//	<receipt from=GROUP participant=PEER id type="read" t/>   <receipt from=OWN recipient=PEER id t/>
//	<notification from=… id type=T t>…</notification>, T = w:gp2 (from GROUP, with participant),
//	    devices, picture, server_sync, account_sync, privacy_token, wafleet_emulator_unknown,
//	    and encrypt <count value=N/> (below)
//	<call from=PEER id t notify><offer call-id call-creator/></call>
//
// Messages are real ciphertext, sent through the contact send path below
// (dayonemsg.go): each device's come from one device of a pool of 8
// emulated contacts (made at the first day-one message, listed with the
// others), in a group of its own (GROUP, one sender key per device), and
// from its account's phone (OWN, a deviceSentMessage to PEER), all chosen
// from the device's JID so that every login continues the same sessions.
// The first message of a session, and every pkmsg kind of the cycle (one
// in ten stanzas), starts a session from a bundle of the device, using up
// one of its one-time prekeys; the Signal initiator repeats its pkmsg
// until it hears from the peer, and day-one's client never writes, so
// 1:1 messages all go out as pkmsg. Like any contact message each awaits
// the device's receipt and has its retry receipts answered. With
// GarbageShare (0..1, default 0) that share of messages is random bytes
// from a made-up peer instead, which no client decrypts (a fault).
//
// PEER is a made-up contact (15559xxxxxx), GROUP a group 120363…@g.us,
// OWN the account's own number; every from, participant and recipient is
// a JID encoding.
//
// Acks. Each message, receipt, notification and call must be answered with
// exactly <ack class=TAG id=ID to=FROM [participant=P] [recipient=R]
// [type=T]/> (PROTOCOL.md 9.8; whatsmeow's sendAck): class the stanza's
// tag, to its from, participant and recipient copied when it had them and
// absent otherwise (as JID encodings), type copied when it had one except
// for class message, where type must be absent. A matching ack settles the
// stanza (acks_ok). Anything else counts acks_malformed, is listed in
// Violations and settles nothing, the connection staying open: an unknown
// or already-acked id, a wrong class or to, a missing or extra attribute, a
// string where a JID belongs, content in the ack, type on a message ack, an
// error attribute on a message ack, an ack of <presence>, <chatstate>,
// <ib> or <iq>. A client <receipt> naming a pushed message (any type but
// retry) stops that message's deadline and drops it from redelivery (a
// delivery receipt also settles a message); its ack is still recognised
// afterwards. Acks from a connection replaced by a newer login are
// ignored: the newer one owns the device's stanzas.
//
// Deadline. When the oldest unsettled stanza has waited AckDeadline (60 s;
// reports say "minutes", the real value is not known), the server sends
// <stream:error><ack class=TAG id=ID/></stream:error> naming it and closes
// (ack_deadline_kills, and a violation); the stanza stays pending and is
// redelivered first on the next login.
//
// Server pings every PingInterval (30 s): <iq from="s.whatsapp.net" id
// xmlns="urn:xmpp:ping" type="get"/>, pings 2, 4, 6… without type (the form
// of whatsapp-rust issues 333 and 783) and 3, 6, 9… without id
// (server_pings_sent). The answer is <iq to="s.whatsapp.net" type="result"
// [id]/>, with the ping's id exactly when it had one
// (server_pings_answered). A result with another id, or without id when the
// ping had one, is a violation that ends the connection as before. A ping
// still unanswered at the next ping, or after AckDeadline, ends the stream
// like an unacked stanza: <stream:error><ack class="iq" [id]/></stream:error>
// (counted in ack_deadline_kills). What the real server does then is not
// known; WhatsApp Web answers every server ping, whatsmeow and Baileys
// answer none.
//
// Prekeys. Uploads are checked strictly (PROTOCOL.md 9.8): <iq
// xmlns="encrypt" type="set" to="s.whatsapp.net" id> with <registration>
// (4 bytes, the registration ID of pairing), <type> (05), <identity> (32
// bytes, the device's identity key), <list> of 1..812 <key><id>3
// bytes</id><value>32 bytes</value></key> with IDs distinct (an ID
// uploaded before is accepted again and counted once: a client whose result
// was lost resends it), and <skey><id>3</id><value>32</value>
// <signature>64</signature></skey>, the signed prekey the device registered
// with, verifying with the identity key over 05 || value, each child once
// and nothing else, all binary content.
// Anything else gets <error code="400" text="bad-request"/> and a
// violation. Each session a contact starts with the device (its bundle
// fetched) consumes one prekey; when the count falls below 5 the server
// pushes <notification from="s.whatsapp.net" id type="encrypt" t><count
// value=N/></notification> (once, until an upload brings the count back to
// 5). Outside day-one mode uploads are counted as before, unchecked.
//
// <active/> is answered as always; the server does not wait for it before
// pushing (the real order is not known; pushing early is stricter).
//
// Settings change at runtime (SetDayOne, POST /dayone): new logins follow
// them; live day-one connections pick up new rates, deadlines and
// intervals, and pause while day-one is off. A negative PushRate,
// PushBurst, AckDeadline or PingInterval turns that part off.
//
// # Phone
//
// Phone.Scan takes QR text (URL form or legacy four fields, PROTOCOL.md 8.3),
// checks the ref is live and its keys match the registration, sends
// pair-success with an ADV identity signed by the account's primary key and
// HMACed with the QR's ADV secret, verifies the pair-device-sign reply, records
// the device and ends the stream with code 515. Accounts are numbered
// 1555000xxxx (LIDs 1000000000000xx); a companion identity that links again
// keeps its account and gets the next device number. Phone.Unlink removes a
// device (<stream:error code="401"><conflict type="device_removed"/>);
// Phone.Kick ends connections with conflict/replaced, 503, 515 or 401; the
// last is <stream:error code="401"/> without a conflict child and leaves the
// device paired: a client must reconnect and let the login decide, not
// wipe itself.
//
// Phone.EnterLinkCode (POST /link {"phone","code"}) is the operator typing
// a link code on the phone of a number (Linked devices → Link with phone
// number instead), the other way to pair (PROTOCOL.md 10). The companion,
// on its registration connection, first sends companion_hello (<iq xmlns=md
// type=set><link_code_companion_reg stage="companion_hello"
// jid=PHONE@s.whatsapp.net>): every child is checked (80-byte wrapped
// ephemeral, the handshake's static key as companion_server_auth_key_pub,
// a platform number, a "Browser (OS)" display, the nonce as whatsmeow's 00
// byte or Baileys' "0"), else 400 and a violation; the answer carries a
// <link_code_pairing_ref>. When the code is typed, the server sends
// <notification type="link_code_companion_reg"> with the ref, the phone's
// ephemeral wrapped under the typed code and the account's identity key;
// the companion must ack it exactly (<ack class="notification" id
// to=s.whatsapp.net type="link_code_companion_reg"/>) before
// companion_finish (else 400, a violation, the attempt over). A key bundle
// that does not open, because another code was typed, is answered 401
// (ErrLinkCodeMismatch, not a violation); otherwise the answer is a result
// and pair-success follows, HMACed with the derived ADV secret, and the
// rest is QR pairing. Stats: link_code_requests, link_code_pairings (also
// in pairings), link_code_failures.
//
// # Contacts
//
// Server.AddContact (contact.go) creates an emulated WhatsApp user on the
// other side of our accounts' conversations: a phone number (1555100xxxx
// unless given) with a primary device (0) and a companion (1), each a
// SignalDevice with its own identity key pair, registration ID, signed
// prekey (signed by the identity key over 05 || key) and a stock of 50
// one-time prekeys. An account's phone is a SignalDevice too, made on first
// use, whose identity key is the account's primary key (its one-time
// prekeys are made at the first fetch of its bundle).
//
// Server.PreKeyBundle hands out the bundle of any of them, or of one of our
// companions from what it registered and uploaded: the public halves of
// uploaded one-time prekeys are kept (day-one uploads, whose values are
// checked) and handed out oldest first, each once, as the real server
// does; the count falls with each, and a companion left with fewer than 5
// gets the encrypt notification through its queue. A device whose keys
// ran out gets a bundle without a one-time prekey; a contact's device
// publishes more.
//
// Contacts send through the real protocol path (contactsend.go): for each
// paired companion of the account (the emulated phone reads nothing), the
// sending device builds a session from a bundle the server hands out unless
// it has one, pads and encrypts the E2E Message, and the server queues one
// stanza per companion in the device's acked queue (deadline and
// redelivery as above; outside day-one mode, redelivery at login):
//
//	SendText       <message from=CONTACT[:1] id t type="text" notify=NAME><enc v="2" type="pkmsg"|"msg"/></message>
//	SendGroupText  <message from=GROUP participant=CONTACT[:1] id t type="text" notify=NAME>
//	                   [<enc type="pkmsg"|"msg">Message{senderKeyDistributionMessage}</enc>] <enc v="2" type="skmsg"/></message>
//	               (the distribution only to a device that has not had it)
//	SendFromPhone  <message from=OWN id t type="text" recipient=PEER><enc …>Message{deviceSentMessage}</enc></message>
//
// Teeth (contactroute.go): each routed message awaits the recipient
// device's receipt <receipt id to=FROM [participant] [recipient] [type]/>
// (to, participant, recipient as the message had them, else a violation
// that confirms nothing); one not in by Options.ReceiptDeadline (60 s)
// counts in receipts_overdue, and in receipts_late when it comes after. A
// retry receipt (<receipt type="retry"><retry count id t v/><registration/>
// [<keys>…</keys>]</receipt>, registration the device's, else a violation)
// is answered up to 5 times: the message encrypted again 1:1 (a group's
// with the sender's distribution added), from a fresh session when it
// carries <keys> or counts 2 or more, sent with the same id and t and
// <enc count=N> once the original is acked; the sixth gives the message up
// (messages_undelivered).
//
// # Provisioning
//
// Options.Provisioning (`manager emulator --provisioning`) enables
// Server.Provision and POST /provision, a shortcut for load runs
// (provision.go): devices recorded as paired without a registration
// connection or a scan, each on a new account whose phone signs its
// identity, holding a given number of one-time prekeys (IDs 1..N), with
// the public halves of the first of them when given (handed out in
// bundles like uploaded ones). Their public keys and signed prekey are
// checked as at registration. After that
// they are devices like the others: a full handshake, the login checked
// against the recorded noise key, day-one pushes, acks and pings.
//
// # Faults
//
// Select faults with Options.Faults, Server.SetFaults, POST /faults, or
// `manager emulator --fault NAME` (repeatable). Names:
//
//	name                      effect                                                   client-side result
//	bad-root-signature        intermediate certificate signed by another root          crypto.ErrCertRootSignature
//	wrong-leaf-key            leaf certifies a key that is not the server static key   crypto.ErrCertLeafKeyMismatch
//	expired-certificate       leaf validity ended an hour ago                          crypto.ErrCertExpired (leaf)
//	wrong-issuer-serial       leaf issuerSerial is not the intermediate's serial       crypto.ErrCertLeafIssuer
//	drop-after-hello          socket closed right after ClientHello                    handshake error (wire.ErrClosed)
//	stall-after-hello         no ServerHello; socket left open                         wire.ErrHandshakeTimeout
//	slow-server-hello[=DUR]   ServerHello after DUR (default 3s)                       timeout if DUR > client timeout
//	huge-server-hello         ServerHello announced at 16 MiB, body sent 4 KiB a       wire.ErrFrameTooLarge from the
//	                          message until the client hangs up                        length prefix alone
//	bad-pair-hmac             pair-success HMAC made with a wrong ADV secret           crypto.ErrADVHMACMismatch; reply 401 hmac-mismatch
//	bad-account-signature     pair-success account signature corrupted                 crypto.ErrADVSignatureMismatch; reply 401 signature-mismatch
//	link-code-no-answer       a typed link code never reaches the companion            the code expires unanswered
//	link-code-bad-primary-hello  the notification's wrapped primary key is 40 bytes    crypto.ErrLinkCodeWrapped; attempt over
//	login-failure-401         every login answered <failure reason="401"/>             logged out
//	conflict-after-success    <success/>, then <stream:error><conflict type="replaced"/>  replaced
//	restart-after-active      <stream:error code="515"/> right after <active/> is answered   reconnect; repeated 515s back off
//	random-disconnects[=RATE] logged-in sockets dropped at RATE per second (def. 0.05)  read error, reconnect
//	refuse-connections        WebSocket upgrade answered with HTTP 503                 dial error
//	login-failure-402[=DUR]   logins get <failure reason="402" code="101" expire=N>,   temporary ban: wait N seconds, then
//	                          for DUR (def. 30s) from when set; N = seconds left       reconnect; works again after it
//	login-failure-403         logins get <failure reason="403" logout_message_header   locked: wipe, banned alarm; pair
//	                          logout_message_subtext/>; the device is removed          again when re-armed (or auto-repair)
//	login-failure-406         logins get <failure reason="406"/>; device removed       banned: as 403
//	drop-pongs                keepalive pings (w:p) unanswered, live connections too   missed pongs: tolerate them
//
// Faults apply to logins and connections that start after they are set;
// drop-pongs also to live connections. login-failure-402 is spent once its
// duration has passed: it stays listed, logins succeed; setting it again
// with the same duration keeps the running ban, another duration starts a
// new one. Precedence at login: login-failure-401, an unknown device or
// key (401), 403, 406, then a running 402 ban. 403 and 406 also end the
// device's live connections with <stream:error code="401"><conflict
// type="device_removed"/>.
//
// Unknown names are ErrUnknownFault, whose message lists the valid ones.
//
// # Stats and control API
//
// Stats (GET /stats) counts handshakes, registrations, pairings, logins,
// logins_rejected, active_connections, max_connections_per_device, pings;
// for day-one stanzas_pushed, acks_ok, acks_malformed, ack_deadline_kills,
// redeliveries, server_pings_sent, server_pings_answered; prekey_uploads
// and the gauge devices_with_prekeys (devices whose count is at least 1);
// link_code_requests, link_code_pairings, link_code_failures; provisioned;
// for our companions' messages companion_messages,
// companion_messages_refused, companion_decrypt_failures,
// companion_group_messages, companion_retry_receipts,
// companion_retry_answers;
// for contacts contacts, contact_messages, messages_routed, receipts,
// receipts_overdue, receipts_late, retry_receipts, decrypt_failures,
// resends, messages_undelivered; and lists
// violations. Per contact, GET /contacts adds its devices' traffic with
// our companions (sent_pkmsg, sent_msg, received_pkmsg, received_msg,
// decrypt_failures: a pkmsg beyond a session's first is a re-key) and GET
// /contacts/received?contact=PHONE lists what its devices decrypted (id,
// device, from, chat, type, text; the last 64 per device). The JSON keys are a contract with outside tools
// (only ever added to). Server.WaitFor blocks until a condition on Stats
// holds, for tests.
//
// The control API (control.go) shares the chat port: POST /scan, /link, /unlink,
// /kick (reasons conflict, replaced, 401, 503, 515), GET /stats, /devices,
// GET/POST /faults, GET/POST /dayone ({"enabled":true,"push_rate":1,
// "push_burst":20,"ack_deadline":"60s","ping_interval":"30s","garbage_share":0}; absent
// fields keep their value; a bad one is 400 naming the field), GET/POST
// /version ({"min":"2.3000.N","latest":"2.3000.N"}; 400 for a malformed
// version), POST /provision (when enabled), and GET /sw.js: a script shaped like WhatsApp Web's
// service-worker, whose self.__swData JSON carries
// \"client_revision\":N (N the tertiary part of the latest version) the
// way the real file escapes it, for clients that look up the current
// version (Baileys' fetchLatestWaWebVersion reads it so).
//
// # Use from Go
//
//	srv, err := emulator.New(emulator.Options{})
//	err = srv.Start(ctx)
//	defer srv.Close()
//	// client: dial srv.URL(), trust srv.RootPublicKey()
//	linked, err := srv.Phone().Scan(ctx, qrText)
//	st, err := srv.WaitFor(ctx, func(s emulator.Stats) bool { return s.Logins == 1 })
//
// Logs (Options.Logger) never contain QR contents, link codes, refs or keys.
package emulator
