// Package pairing is the actor that links an unpaired account to a phone by
// QR code (PROTOCOL.md section 8). The connection actor spawns it as a child
// when the server sends <pair-device>, forwards it the pair-device and
// pair-success stanzas, and writes the stanzas it asks for on the socket.
//
// The pairing actor
//
//   - acknowledges pair-device and shows one QR code per ref, the first for
//     Schedule.First (60 s), each later one for Schedule.Next (20 s),
//     publishing events.KindQR; when the refs run out it tells its parent
//     (*Expired) and the account waits, unpaired, for an operator;
//   - on pair-success verifies the ADV HMAC and the account signature, adds
//     the device signature, saves the paired Device in one atomic store
//     write (in a goroutine, with a deadline) and hands the parent the
//     pair-device-sign reply together with the saved Device (*Finish);
//   - answers a bad pair-success with an error IQ (401 hmac-mismatch,
//     401 signature-mismatch, 500 internal-error) and reports a *Error.
//
// Nothing half-written stays in the store: the save is one atomic Save; if
// the actor is stopped before it has handed over a completed save, it
// restores the unpaired Device (Restore); once the parent holds the Finish,
// undoing it (when the reply cannot be written) is the parent's job, with
// the same Restore.
//
// Only the connection actor (actors/connection) imports this package.
// QR contents, keys and the ADV secret are never logged.
package pairing
