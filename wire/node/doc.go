// Package node is the binary XML node codec of the WhatsApp Web protocol
// (PROTOCOL.md section 6): the Node type with ordered attributes whose
// values are strings or JIDs, content that is children, bytes, a string or
// a JID, and the encoder and decoder of the tokenised binary form, including
// the payload flags byte with optional zlib compression.
//
// The connection and pairing actors use it to build and read stanzas, the
// emulator uses it for the server side, and wire/payload feeds it the
// plaintext of transport frames.
//
// Decoding copies its input once and returns strings and byte slices that
// point into that private copy, so a decoded Node stays valid after the
// caller reuses its buffer. A first pass over the input measures what the
// node holds: the copy is made with room for its unpacked strings, and its
// nodes, attributes and JIDs take one more allocation for a small stanza
// (one per kind for a larger one), sized from its structure, not its
// length. A caller that hands its buffer over (DecodeOwnedPayload: the
// connection actor, which gets its own copy of each frame from the reader)
// is spared the copy: the node points into that buffer. Byte content of a
// decoded Node must be treated as read-only, and
// any string or byte slice taken from it keeps the whole decoded buffer
// alive: clone small pieces (strings.Clone, bytes.Clone) that are kept for
// long. A stanza whose content does not decode can still give its tag and
// attributes (DecodePayloadHeader), so that it can be acknowledged.
// Encoding appends to a caller-provided buffer (AppendNode) so senders can
// reuse buffers.
//
// The token tables are generated from testdata/protocol/tokens.json into
// tokens_gen.go by `go generate ./...` (see internal/gentokens).
package node
