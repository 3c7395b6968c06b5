// Package wire carries WhatsApp Web frames over a WebSocket and runs the Noise
// handshake that turns a frame connection into an encrypted transport.
//
// Layers, bottom up:
//
//   - frame.go: the 4-byte connection header ([ConnHeader], also the Noise
//     prologue) and 3-byte big-endian length-prefixed frames. [FrameReader]
//     reassembles frames independently of WebSocket message boundaries,
//     under the read limit, or during a handshake under
//     [MaxHandshakeMessageSize] and [HandshakeReadBudget].
//   - ws.go: [Dial] (client, with proxy support) and [Accept] (server, for the
//     emulator) return a [*Conn], a [FrameConn] over gorilla/websocket.
//   - handshake.go: [ClientHandshake] runs the initiator side of the handshake
//     in one call; [AcceptHandshake] runs the responder side step by step so the
//     emulator can inject faults between steps.
//   - transport.go: [Transport] seals and opens frames with the split keys.
//
// The connection actor (client) and the emulator (server) import this package.
// Binary nodes, JIDs and protobufs live in the sub-packages wire/node, wire/jid
// and in the top-level package waproto; the cryptography lives in package
// crypto.
package wire
