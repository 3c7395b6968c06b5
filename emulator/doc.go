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
//     connection, and the overlap is counted in max_connections_per_device.
//   - After success it answers keepalive pings (xmlns w:p, with or without
//     <ping/>), the passive/active IQ, prekey count and upload; any other
//     get/set IQ gets <error code="501" text="feature-not-implemented"/>.
//   - Anything malformed or out of order (bad header or handshake message,
//     undecodable frame or node, an IQ without id, a result the server never
//     asked for, server-only tags) is appended to Stats.Violations and the
//     connection is closed.
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
// Phone.Kick ends connections with conflict/replaced, 503 or 515.
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
//	bad-pair-hmac             pair-success HMAC made with a wrong ADV secret           crypto.ErrADVHMACMismatch; reply 401 hmac-mismatch
//	bad-account-signature     pair-success account signature corrupted                 crypto.ErrADVSignatureMismatch; reply 401 signature-mismatch
//	login-failure-401         every login answered <failure reason="401"/>             logged out
//	conflict-after-success    <success/>, then <stream:error><conflict type="replaced"/>  replaced
//	random-disconnects[=RATE] logged-in sockets dropped at RATE per second (def. 0.05)  read error, reconnect
//	refuse-connections        WebSocket upgrade answered with HTTP 503                 dial error
//
// Unknown names are ErrUnknownFault, whose message lists the valid ones.
//
// # Stats and control API
//
// Stats (GET /stats) counts handshakes, registrations, pairings, logins,
// logins_rejected, active_connections, max_connections_per_device, pings
// and lists violations; the JSON keys are a contract with outside tools.
// Server.WaitFor blocks until a condition on Stats holds, for tests. The
// control API (control.go) shares the chat port: POST /scan, /unlink, /kick,
// GET /stats, /devices, GET/POST /faults.
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
// Logs (Options.Logger) never contain QR contents, refs or keys.
package emulator
