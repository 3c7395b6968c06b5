package wire

import "errors"

// Sentinel errors of package wire. Errors returned by this package wrap one of
// these (or an error of package crypto) with context; test them with errors.Is.
var (
	// ErrFrameTooLarge: a frame body does not fit the 3-byte length prefix on
	// send, or announces a length above the read limit on receive. During a
	// handshake the limit is MaxHandshakeMessageSize per frame and
	// HandshakeReadBudget in all.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrBadHeader: the first bytes from a client are not the connection header.
	ErrBadHeader = errors.New("wire: bad connection header")
	// ErrClosed: the connection was closed, locally or by the peer.
	ErrClosed = errors.New("wire: connection closed")
	// ErrHandshakeTimeout: the Noise handshake did not complete in time.
	ErrHandshakeTimeout = errors.New("wire: handshake timed out")
	// ErrHandshakeMessage: a handshake frame is not a well-formed
	// HandshakeMessage of the expected kind (missing parts, bad key length).
	ErrHandshakeMessage = errors.New("wire: malformed handshake message")
	// ErrDecrypt: a transport frame failed authentication. It is fatal: the
	// transport closes its connection.
	ErrDecrypt = errors.New("wire: frame decryption failed")
	// ErrBadProxy: Dial was given a proxy URL it cannot use.
	ErrBadProxy = errors.New("wire: bad proxy URL")
)
