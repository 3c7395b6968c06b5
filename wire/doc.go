// Package wire carries WhatsApp Web frames over a WebSocket and runs the Noise
// handshake that turns a frame connection into an encrypted transport.
//
// Layers, bottom up:
//
//   - ws.go: [Dial] (client, with proxy support) and [Accept] (server, for the
//     emulator) return a [*Conn], a [FrameConn] over a WebSocket. The HTTP
//     upgrade, on both sides, and the masking come from github.com/gobwas/ws;
//     writes go through a pooled buffer, so an idle Conn holds none.
//   - wsread.go: the WebSocket frames are read by this package, straight into
//     the connection's own buffer, and decoded there: payloads unmasked in
//     place, headers and control frames cut out, pings answered, a close
//     echoed. gorilla/websocket (used before) and gobwas's frame reader both
//     read through a buffer of their own and hand out a copy, so every frame
//     was copied once more after the socket read it; here a frame is opened
//     where the socket put it.
//   - frame.go: the 4-byte connection header ([ConnHeader], also the Noise
//     prologue) and 3-byte big-endian length-prefixed frames, cut out of the
//     decoded stream independently of WebSocket message boundaries, under the
//     read limit, or during a handshake under [MaxHandshakeMessageSize] and
//     [HandshakeReadBudget], refused from their prefix before the buffer
//     grows for them.
//   - handshake.go: [ClientHandshake] runs the initiator side of the handshake
//     in one call; [AcceptHandshake] runs the responder side step by step so the
//     emulator can inject faults between steps.
//   - transport.go: [Transport] seals and opens frames with the split keys,
//     opening in place in the Conn's read buffer.
//   - watch.go, poll_linux.go: [Transport.Watch] hands received frames to a
//     callback. On Linux a client Conn is read when its socket is ready:
//     Dial makes every TCP connection itself (direct, or to a proxy) and
//     keeps the socket under TLS and a proxy's tunnel; once watched, that
//     socket's reads return at once (a Temporary net.Error when nothing
//     waits, which crypto/tls, bufio and this package's readers all pass
//     up and resume from), one epoll instance reports readiness
//     (edge-triggered: each drain reads until nothing is left) and a pool
//     of at most max(4, 2×GOMAXPROCS) goroutines, started only while
//     sockets are ready, decodes whatever is there, frames of one
//     connection one goroutine at a time and in order. An idle connection has no
//     goroutine of its own. Elsewhere, and for other frame connections, a
//     goroutine per transport calls Receive.
//
// The connection actor (client) and the emulator (server) import this package.
// Binary nodes, JIDs and protobufs live in the sub-packages wire/node, wire/jid
// and in the top-level package waproto; the cryptography lives in package
// crypto.
package wire
