package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SendLog remembers the idempotency keys of the messages an account was
// asked to send (POST /api/accounts/{id}/messages), so that a request
// repeated with the same key — after a timeout, a restart of the process
// or a failover to another instance — never sends a second message.
type SendLog interface {
	// ClaimSend records that key names the message msgID of account id,
	// unless key already names a message recorded less than SendKeyTTL
	// ago: then it returns that message's ID and false, and writes
	// nothing. It is one atomic write, fenced like device writes (the
	// caller claims before it sends: a message is sent at most once). A
	// key or ID out of bounds (ValidateSendKey) is an error wrapping
	// ErrInvalidSend.
	//
	// A fresh claim also prunes, in the same write, the expired keys
	// among the next SendPruneBatch of the account (a cursor kept in its
	// Signal state walks them in turn), so an account keeps about the
	// keys it claimed in the last SendKeyTTL, never a live one fewer.
	ClaimSend(ctx context.Context, id, key, msgID string) (string, bool, error)
	// SentWith returns the message ID that key names for account id, if
	// a claim recorded it less than SendKeyTTL ago. It only reads (not
	// fenced): a send about to be refused (not connected, rate limited)
	// asks it, so that a repeated request still answers as a duplicate.
	SentWith(ctx context.Context, id, key string) (string, bool, error)
}

// Bounds of SendLog entries.
const (
	// MaxSendKeyLen bounds an idempotency key.
	MaxSendKeyLen = 128
	// MaxMessageIDLen bounds a message ID.
	MaxMessageIDLen = 64
	// SendKeyTTL is how long a key is remembered: a request repeated
	// later sends again. It is the window in which a caller may retry.
	SendKeyTTL = 24 * time.Hour
	// SendPruneBatch is how many of an account's keys a fresh claim
	// examines for expiry: more than one, so that pruning outruns the
	// claims and an account holds at most about
	// SendPruneBatch/(SendPruneBatch-1) times its live keys.
	SendPruneBatch = 8
)

// ErrInvalidSend: ClaimSend was given a key or message ID out of bounds;
// nothing was written.
var ErrInvalidSend = fmt.Errorf("store: invalid idempotency key or message id")

// ValidateSendKey checks an idempotency key (1..MaxSendKeyLen printable
// ASCII bytes) and a message ID (1..MaxMessageIDLen of [0-9A-Za-z]).
func ValidateSendKey(key, msgID string) error {
	if len(key) == 0 || len(key) > MaxSendKeyLen {
		return fmt.Errorf("%w: a key of %d bytes (1 to %d)", ErrInvalidSend, len(key), MaxSendKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fmt.Errorf("%w: the key is not printable ASCII without spaces", ErrInvalidSend)
		}
	}
	if len(msgID) == 0 || len(msgID) > MaxMessageIDLen {
		return fmt.Errorf("%w: a message id of %d bytes", ErrInvalidSend, len(msgID))
	}
	for i := 0; i < len(msgID); i++ {
		c := msgID[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return fmt.Errorf("%w: the message id is not alphanumeric", ErrInvalidSend)
		}
	}
	return nil
}

// SendKeyKey is the key of an idempotency key in the account's Signal
// state (bbolt bucket, Redis hash): it goes with the Signal state on
// Delete, Archive and RestoreArchived. The value is sendEntry's.
func SendKeyKey(key string) string { return "m:" + key }

// SendCursorKey is the key, in the account's Signal state, of the pruning
// cursor of its idempotency keys (the backend's own form; absent: start
// again from the first key).
const SendCursorKey = "p:m"

// IsRecordKey reports whether a key of the account's Signal state names a
// sealed record (a session or a sender key), not a public identity or an
// idempotency key.
func IsRecordKey(k string) bool { return len(k) > 2 && (k[0] == 's' || k[0] == 'k') && k[1] == ':' }

// SendEntry encodes a SendLog entry: the claim's Unix time and the
// message ID, "UNIX ID".
func SendEntry(at time.Time, msgID string) string {
	return strconv.FormatInt(at.Unix(), 10) + " " + msgID
}

// LiveSendEntry returns the message ID of an entry recorded less than
// SendKeyTTL before now, and false for an older or malformed one.
func LiveSendEntry(v string, now time.Time) (string, bool) {
	at, id, ok := strings.Cut(v, " ")
	secs, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" || now.Sub(time.Unix(secs, 0)) >= SendKeyTTL {
		return "", false
	}
	return id, true
}
