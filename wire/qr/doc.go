// Package qr builds and parses the text of the WhatsApp Web pairing QR code
// (PROTOCOL.md 8.3).
//
// The current form is
//
//	https://wa.me/settings/linked_devices#REF,NOISE,IDENTITY,ADV,TYPE
//
// where REF is a ref from the server's pair-device node, NOISE, IDENTITY and
// ADV are the standard, padded base64 of the companion's 32-byte noise public
// key, identity public key and ADV secret, and TYPE is a one-character
// [ClientType]. The legacy form (older whatsmeow) is REF,NOISE,IDENTITY,ADV
// with neither prefix nor TYPE. [Build] emits the current form; [Parse]
// accepts both.
//
// The QR text carries the ADV secret, which authenticates the phone's
// pair-success message. Nothing in this package puts the QR text or the
// secret into an error or a log line: errors name the field that is wrong,
// not its value, and [Code] formats itself with the secret redacted.
//
// schedule.go holds the QR schedule: how long each code lasts.
//
// The pairing and connection actors import this package to render codes;
// the emulator imports it to issue refs and, as the phone, to read codes.
package qr
