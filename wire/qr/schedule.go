package qr

import "time"

// The QR schedule (PROTOCOL.md 8.4): the server's first pairing ref, and so
// the first code built from it, lasts FirstTTL; each later one lasts
// NextTTL. The pairing actor shows its codes for these times unless told
// otherwise, and the emulator issues its refs with them.
const (
	FirstTTL = 60 * time.Second
	NextTTL  = 20 * time.Second
)
