// Package signal implements the core of the Signal protocol as WhatsApp
// uses it for end-to-end encrypted messages: the X3DH key agreement, the
// Double Ratchet of 1:1 sessions and the sender keys of groups, with the
// wire messages WhatsApp carries in <enc> nodes. It is written from the
// published specifications (X3DH, the Double Ratchet, libsignal's sender
// keys) and from the wire facts of public implementations, go.mau.fi/libsignal
// (the Go port whatsmeow uses) and WhiskeySockets/libsignal-node (Baileys'),
// checked against each other; where they disagree, the comments say so.
//
// What it implements:
//
//   - Wire messages: SignalMessage ("msg": version byte 0x33 || protobuf ||
//     HMAC-SHA256 truncated to 8 bytes over sender identity || receiver
//     identity || version byte || protobuf, the identities as 33-byte
//     0x05-prefixed keys), PreKeySignalMessage ("pkmsg"), SenderKeyMessage
//     ("skmsg": version byte || protobuf || 64-byte XEdDSA signature) and
//     SenderKeyDistribution. Their protobuf is waproto's signal.proto.
//   - KDFs: the X3DH master secret (32 × 0xFF || DH1 || DH2 || DH3 [|| DH4],
//     HKDF-SHA256 "WhisperText" → root key, chain key), the root KDF (salt
//     the root key, "WhisperRatchet", 64 bytes), the chain step (HMAC 0x01
//     → message key seed, 0x02 → next chain key), message keys ("WhisperMessageKeys",
//     80 bytes: cipher key, MAC key, IV), sender-key message keys
//     ("WhisperGroup", 48 bytes: IV, cipher key), AES-256-CBC with PKCS#7.
//   - Session: one peer device's record, its current Double Ratchet state
//     and up to MaxArchivedStates replaced ones. Initiate (we send first,
//     from the peer's prekey bundle) and DecryptPreKey (we receive a pkmsg
//     first) run X3DH; Encrypt and Decrypt run the ratchet. Late messages
//     decrypt with kept keys (MaxSkippedKeys per chain, MaxReceiverChains
//     chains); a message more than MaxSkip ahead is refused; a used key is
//     ErrDuplicate, so a replay never decrypts twice. A failed decryption
//     changes nothing.
//   - SenderKey: one sender's key in one group: ours (NewSenderKey,
//     Distribution, Encrypt) or a peer's (Process, Decrypt), with the same
//     bounds, signatures checked with crypto.Verify.
//   - Pad and Unpad: WhatsApp's random padding of the plaintext Message.
//   - A compact binary stored form of Session and SenderKey with a version
//     byte (MarshalBinary, UnmarshalBinary; record.go describes it).
//
// Every public key taken from a message passes crypto.CheckPublicKey (a key
// of small order is ErrMalformed), MACs are compared in constant time, and
// errors never carry key material or plaintext.
//
// The store keeps its records (store.SignalStore); the connection actor's
// receive path decrypts <enc> nodes with it and its send path encrypts
// them (1:1 fan-out, and group messages under our own SenderKey); the
// emulator's contacts talk it.
//
// It is in the core layer and imports crypto and waproto.
package signal
