package emulator

import (
	"errors"
	"fmt"
)

// Sentinel errors of the emulator. Errors returned by the package wrap one of
// these with context; test them with errors.Is. None of them carries a key, a
// ref or any other part of a QR code.
var (
	// ErrUnknownFault: a fault name that is not in the table of doc.go.
	ErrUnknownFault = errors.New("emulator: unknown fault")
	// ErrBadFault: a known fault with a missing, extra or invalid value.
	ErrBadFault = errors.New("emulator: bad fault value")
	// ErrBadOptions: Options that cannot work (negative durations, …).
	ErrBadOptions = errors.New("emulator: bad options")
	// ErrBadDayOne: a DayOne setting out of range; the message names the
	// field.
	ErrBadDayOne = errors.New("emulator: bad day-one setting")
	// ErrBadVersion: a version that is not "primary.secondary.tertiary";
	// the message names the field.
	ErrBadVersion = errors.New("emulator: bad version")
	// ErrClosed: the server has been closed.
	ErrClosed = errors.New("emulator: server closed")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("emulator: server already started")

	// ErrBadQR: the scanned text is not a QR code of PROTOCOL.md 8.3.
	ErrBadQR = errors.New("emulator: unreadable QR code")
	// ErrUnknownRef: no registration ever issued the QR code's ref.
	ErrUnknownRef = errors.New("emulator: unknown QR ref")
	// ErrRefExpired: the ref's lifetime has passed, or its connection is gone.
	ErrRefExpired = errors.New("emulator: QR ref expired")
	// ErrAlreadyScanned: a code of this registration was already scanned.
	ErrAlreadyScanned = errors.New("emulator: registration already scanned")
	// ErrKeyMismatch: the QR code's noise or identity key is not the one the
	// registration presented.
	ErrKeyMismatch = errors.New("emulator: QR keys do not match the registration")
	// ErrBadPhone: ScanOptions.Phone is not a phone number.
	ErrBadPhone = errors.New("emulator: invalid phone number")
	// ErrPairRejected: the companion answered pair-success with an error IQ
	// (see PairError).
	ErrPairRejected = errors.New("emulator: companion rejected the pairing")
	// ErrBadPairReply: the companion's pair-device-sign failed the phone's
	// checks (device signature, stripped account key, key-index).
	ErrBadPairReply = errors.New("emulator: invalid pair-device-sign reply")
	// ErrPairTimeout: the companion did not answer pair-success in time.
	ErrPairTimeout = errors.New("emulator: no pair-device-sign in time")
	// ErrPairAborted: the companion's connection ended before it answered.
	ErrPairAborted = errors.New("emulator: companion disconnected during pairing")

	// ErrBadLinkCode: the code typed on the phone is not 8 characters of
	// the link-code alphabet.
	ErrBadLinkCode = errors.New("emulator: a link code is 8 characters of 1-9 and A-Z without I, O, U")
	// ErrNoLinkCode: no companion asked for a link code for this number (or
	// the phone already answered it).
	ErrNoLinkCode = errors.New("emulator: no companion waits for a link code for this number")
	// ErrLinkCodeMismatch: the code typed on the phone is not the one the
	// companion showed (its key bundle did not open).
	ErrLinkCodeMismatch = errors.New("emulator: the link code typed is not the companion's")
	// ErrBadLinkCodeReply: companion_finish was malformed or out of order.
	ErrBadLinkCodeReply = errors.New("emulator: invalid companion_finish")

	// ErrUnknownDevice: no paired device has this JID.
	ErrUnknownDevice = errors.New("emulator: unknown device")
	// ErrNotConnected: the device has no open connection.
	ErrNotConnected = errors.New("emulator: device not connected")
	// ErrBadReason: Kick was given a reason it does not know.
	ErrBadReason = errors.New("emulator: unknown kick reason")
)

// PairError is the error IQ a companion sent instead of pair-device-sign
// (PROTOCOL.md 8.7), e.g. 401 hmac-mismatch. It matches ErrPairRejected.
type PairError struct {
	Code int    // the <error code>, 0 if absent or not a number
	Text string // the <error text>
}

func (e *PairError) Error() string {
	return fmt.Sprintf("emulator: companion rejected the pairing: %d %s", e.Code, e.Text)
}

// Unwrap makes errors.Is(err, ErrPairRejected) hold.
func (e *PairError) Unwrap() error { return ErrPairRejected }
