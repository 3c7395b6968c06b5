package connection

import "errors"

// Errors of the package, in one block. Failures reported in events wrap them
// with what failed, so that last_error reads as a sentence; a *ServerError
// matches one of its classes (ErrLoggedOut, ErrReplaced, ErrRefused,
// ErrRestart, ErrServer) with errors.Is.
var (
	// ErrKeepaliveTimeout: no keepalive ping was answered for
	// Keepalive.Window; the connection is closed and reconnected.
	ErrKeepaliveTimeout = errors.New("connection: keepalive pings unanswered")
	// ErrWriteQueueFull: more frames were waiting to be written than
	// Deps.WriteQueue allows; the connection is closed and reconnected.
	ErrWriteQueueFull = errors.New("connection: write queue full")
	// ErrStreamEnd: the server ended the stream.
	ErrStreamEnd = errors.New("connection: server ended the stream")
	// ErrNoStore: Deps has no Store.
	ErrNoStore = errors.New("connection: no store configured")

	// ErrLoggedOut: the phone unlinked the device (failure 401 or conflict
	// device_removed): the device is wiped and pairing starts again.
	ErrLoggedOut = errors.New("connection: logged out by the server")
	// ErrReplaced: another connection with the same credentials took over
	// (conflict replaced): the account stops and an alarm is raised.
	ErrReplaced = errors.New("connection: replaced by another connection")
	// ErrRefused: the server refused the login for a reason a reconnect
	// will not fix (failure 400, 409, 415, 418, 501, other 4xx): the
	// account stops and an alarm is raised.
	ErrRefused = errors.New("connection: login refused")
	// ErrBanned: the account is locked or banned (failure 403 or 406): the
	// device is wiped and the banned alarm raised; pairing starts again
	// only with Deps.AutoRepair or when an operator re-arms it.
	ErrBanned = errors.New("connection: account locked or banned")
	// ErrTemporarilyBanned: failure 402: the account waits until the ban
	// expires, then reconnects by itself.
	ErrTemporarilyBanned = errors.New("connection: temporarily banned")
	// ErrOutdated: failure 405: the server refuses this client version;
	// the account waits for the VersionSource to find a newer one.
	ErrOutdated = errors.New("connection: client version refused as outdated")
	// ErrUnacked: the server ended the stream for a stanza it considers
	// unacknowledged (<stream:error><ack/>); reconnect with backoff.
	ErrUnacked = errors.New("connection: server ended the stream for an unacknowledged stanza")
	// ErrRestart: the server asked for a new connection (515).
	ErrRestart = errors.New("connection: server asked to reconnect")
	// ErrServer: a transient server-side problem (5xx, other stream
	// errors): reconnect with backoff.
	ErrServer = errors.New("connection: server error")

	// errNotConnected: a write was asked for while no session is up.
	errNotConnected = errors.New("connection: not connected")
	// errPairingUndone: a saved pairing whose reply never reached the
	// server was removed from the store again.
	errPairingUndone = errors.New("connection: pair-device-sign was not sent; the pairing was undone")
)
