package store

import (
	"context"
	"errors"
)

// Errors returned by stores and the codec. Wrapped errors add context
// (which id, which step); test for them with errors.Is.
var (
	// ErrNotFound: no device with that id, or no mapping for that user.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalidDevice: the device fails Validate; nothing was written.
	// The wrapped *ValidationError names the field.
	ErrInvalidDevice = errors.New("store: invalid device")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store: closed")
	// ErrLeaseLost: a write from an instance that no longer holds the
	// account's lease (fleet mode); nothing was written.
	ErrLeaseLost = errors.New("store: account lease lost")
	// ErrCorrupt: stored bytes do not decode to a valid device (unknown
	// version, truncated, checksum mismatch, tampered sealed data).
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrWrongKey: the record was sealed with a different key than the
	// configured Sealer's.
	ErrWrongKey = errors.New("store: record sealed with a different key")
	// ErrNoSealer: the record is sealed and the store has no Sealer.
	ErrNoSealer = errors.New("store: record is sealed and no key is configured")
	// ErrLocked: the database file is held by another process.
	ErrLocked = errors.New("store: database is locked by another process")
)

// Store persists Devices by account id, and the LID <-> phone-number user
// mapping that pairing learns (PROTOCOL.md 8.8). Implementations are safe for
// concurrent use. Contract tests live in package storetest.
type Store interface {
	// Load returns the device stored under id, or an error wrapping
	// ErrNotFound when there is none. The result is the caller's to modify.
	Load(ctx context.Context, id string) (*Device, error)

	// Save validates d and writes it atomically together with its
	// LID <-> PN user mapping (derived from the user parts of JID and LID)
	// in one transaction: after an error the previously stored version and
	// its mapping are intact. An invalid device yields an error wrapping
	// ErrInvalidDevice and writes nothing. The store keeps no reference to d.
	Save(ctx context.Context, d *Device) error

	// Delete wipes the device (logged out) and its mapping. Deleting an
	// absent id is not an error. A mapping still derived from another
	// stored device survives.
	Delete(ctx context.Context, id string) error

	// IDs returns the ids of the stored devices in ascending order.
	IDs(ctx context.Context) ([]string, error)

	// PNForLID returns the phone-number user ("15551234567") for a LID user
	// ("123456789012345"), or an error wrapping ErrNotFound.
	PNForLID(ctx context.Context, lidUser string) (string, error)

	// LIDForPN returns the LID user for a phone-number user, or an error
	// wrapping ErrNotFound.
	LIDForPN(ctx context.Context, pnUser string) (string, error)

	// Close releases the store. It is idempotent; any other method called
	// after Close returns an error wrapping ErrClosed.
	Close() error
}
