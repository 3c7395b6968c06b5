// Package crypto holds the cryptography of the WhatsApp Web multi-device
// protocol, written from the facts in the project's PROTOCOL.md: X25519 key
// pairs, Signal-style Curve25519 signatures, the Noise_XX_25519_AESGCM_SHA256
// handshake with WhatsApp's one deviation (no MixHash of message 1's empty
// payload) and its transport ciphers, the server certificate chain, the
// ADV identity checks of QR pairing, and the derivations of link-code
// pairing (pair by phone number: code generation, PBKDF2/AES-CTR key
// wrapping, the HKDF/AES-GCM key bundle and the ADV secret, both sides).
//
// It imports only waproto. It is imported by wire (the Noise transport over
// frames), by config (the pinned root key), by the actors
// that handshake and pair (connection, pairing), by store (key generation)
// and by the emulator, which uses the issuing side of the same code: the
// Noise responder, certificate-chain issuing and the phone's ADV signing.
// It knows nothing of actors, Redis, configuration or WebSockets.
//
// Public keys that come from outside pass CheckPublicKey: a point of small
// order, in any of its encodings, is ErrLowOrderKey. DH and Verify apply it
// to every key they get, and VerifyCertChain and the ADV checks name it, so
// no shared secret is computed and no signature accepted under such a key.
//
// Private keys never appear in error strings or in String/LogValue output.
package crypto
