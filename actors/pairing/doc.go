// Package pairing is the actor that links an unpaired account to a phone by
// QR code (PROTOCOL.md section 8) or by link code, the 8-character code the
// operator types on the phone (section 10; linkcode.go, with Deps.LinkPhone). The connection actor spawns it as a child
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
//     the device signature, and hands the parent the paired Device with the
//     pair-device-sign reply (*Finish);
//   - answers a bad pair-success with an error IQ (401 hmac-mismatch,
//     401 signature-mismatch, 500 internal-error) and reports a *Error;
//   - by link code: asks for a code (companion_hello) on pair-device,
//     publishes it (events.KindLinkCode) for the refs' window instead of QR
//     codes, answers the phone's notification with companion_finish, and
//     verifies pair-success under the derived ADV secret, which the paired
//     Device keeps; a refused hello, a malformed notification, a code the
//     phone rejects or one never entered ends the attempt with *Failed.
//
// The pairing actor never touches the store. The parent is the one owner of
// the pairing transaction, in the reference client's order: it saves the
// Device (one atomic Save), then writes the reply; a failed save is answered
// with Finish.SaveFailed's error IQ, and a reply that cannot be written is
// undone with Restore.
//
// Only the connection actor (actors/connection) imports this package.
// QR contents, link codes, keys and the ADV secret are never logged.
package pairing
