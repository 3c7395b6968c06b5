// Package store defines the Device (everything a linked WhatsApp companion
// device must persist: its key material and, once paired, its JIDs, account
// record and the primary's identity key), the Store interface that keeps
// Devices by account id together with the LID <-> phone-number user mapping,
// the versioned record encoding shared by every Store (codec.go, with
// optional AES-256-GCM sealing of the secrets at rest), and the embedded
// Store on a single bbolt file (OpenBolt).
//
// The connection and pairing actors and the supervisor import it; the Redis
// store (store/redis) implements Store. It imports nothing else of this
// module: keys are plain byte arrays and JIDs are strings in their canonical
// form ("15551234567:5@s.whatsapp.net", "123456789012345:5@lid").
//
// Secrets never appear in errors or logs: Device, KeyPair and SignedPreKey
// print and log without key bytes, and validation errors name the field,
// not its value. Every Store must pass the contract tests in store/storetest.
package store
