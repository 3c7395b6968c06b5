package store

import (
	"context"
	"errors"
	"time"
)

// DefaultTimeout bounds one call of an actor to its Store (a load, a save,
// an archive) when its deps set no StoreTimeout.
const DefaultTimeout = 10 * time.Second

// Errors returned by stores and the codec. Wrapped errors add context
// (which id, which step); test for them with errors.Is.
var (
	// ErrNotFound: no device with that id, or no mapping for that user.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalidDevice: the device fails Validate; nothing was written.
	// The wrapped *ValidationError names the field.
	ErrInvalidDevice = errors.New("store: invalid device")
	// ErrInvalidPreKey: AddPreKeys refused a one-time prekey (ID outside
	// 1..MaxPreKeyID, Pub not matching Priv, an ID twice in the batch or
	// already stored, too many keys); nothing was written. The error is a
	// *PreKeyError naming the key's ID, and errors.Is(err, ErrInvalidDevice)
	// holds as well.
	ErrInvalidPreKey = errors.New("store: invalid prekey")
	// ErrInvalidSetting: a setting name or value out of bounds (see
	// ValidateSetting); nothing was read or written.
	ErrInvalidSetting = errors.New("store: invalid setting")
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
	// ErrNotAStore: an existing file is not a wafleet store (empty, not a
	// bbolt file, damaged pages, or missing the store's buckets). It is
	// left as it was.
	ErrNotAStore = errors.New("store: not a wafleet store")
)

// Store is what an account's actors need of the storage: its Device by
// account id, the device's one-time Signal prekeys (kept beside the device,
// never in it), and the archive where a server-initiated wipe sets a device
// aside and from which it is restored. Save also keeps the LID <->
// phone-number user mapping that pairing learns (PROTOCOL.md 8.8); reading
// it back is LIDMap's job. Implementations are safe for concurrent use.
// Contract tests live in package storetest.
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

	// Delete wipes the device (logged out), its mapping, its Signal state
	// (SignalStore) and all its one-time prekeys with their counts (MaxID included: a device paired
	// again has a new identity and starts its prekey IDs afresh), in one
	// transaction where the store can. Deleting an absent id is not an
	// error. A mapping still derived from another stored device survives.
	Delete(ctx context.Context, id string) error

	// Archive moves the device of id, with all its one-time prekeys and
	// their counts and its Signal state (SignalStore), into a new archive entry (sealed like live records) and
	// drops its mapping as Delete does, in one transaction (one fenced
	// script in Redis). The account then has no device. No device is an
	// error wrapping ErrNotFound. reason is kept, cut to
	// MaxArchiveReasonLen bytes; it must not hold secrets.
	Archive(ctx context.Context, id, reason string) (ArchiveEntry, error)

	// RestoreArchived puts the archived device id/key back, with its
	// prekeys, Signal state and mapping, and removes the entry, in one
	// transaction. The account's current device is replaced only when it
	// is unpaired (with its prekeys and Signal state); a paired one is an error wrapping
	// ErrPaired and nothing changes. An unknown entry is an error wrapping
	// ErrNotFound.
	RestoreArchived(ctx context.Context, id, key string) (ArchiveEntry, error)

	// AddPreKeys stores new one-time prekeys of account id, not yet
	// uploaded, all or none, in one transaction (one round trip). The
	// device must be stored (an error wrapping ErrNotFound otherwise). A key
	// ID already stored or twice in keys, an ID outside 1..MaxPreKeyID, a
	// key whose Pub does not match its Priv, or more than MaxPreKeysPerAdd
	// keys is an error wrapping ErrInvalidPreKey (a *PreKeyError, which is
	// also ErrInvalidDevice) and writes nothing. The store does not refuse
	// an ID that was stored once and removed: callers pick new IDs after
	// PreKeyCounts.MaxID, which never goes backwards. No keys: no-op.
	AddPreKeys(ctx context.Context, id string, keys []PreKey) error

	// PreKeysToUpload returns up to n stored keys of id not yet marked
	// uploaded, in ascending ID order (none when n <= 0).
	PreKeysToUpload(ctx context.Context, id string, n int) ([]PreKey, error)

	// MarkPreKeysUploaded marks every stored key of id with ID <= upTo as
	// uploaded. Keys added later, whatever their ID, are not uploaded.
	MarkPreKeysUploaded(ctx context.Context, id string, upTo uint32) error

	// PreKey returns one stored key (uploaded or not), or an error wrapping
	// ErrNotFound.
	PreKey(ctx context.Context, id string, keyID uint32) (PreKey, error)

	// RemovePreKey forgets a key once a session consumed it (absent: not an
	// error). MaxID is kept.
	RemovePreKey(ctx context.Context, id string, keyID uint32) error

	// PreKeyCounts summarises the stored keys of id (all zero when none).
	PreKeyCounts(ctx context.Context, id string) (PreKeyCounts, error)
}

// Backend is a whole store as the process opens it (OpenBolt, or the Redis
// store and its lease-fenced views): the actors' Store and SignalStore
// (apart, so that the actors that only keep the device need not provide
// the Signal state in their tests), plus what the
// process itself does with it — list the stored accounts, read and prune
// the archive, keep the account registry (Registry) and fleet-wide
// settings, close it. The mapping reads
// (LIDMap) are apart: nothing in the process needs them yet.
type Backend interface {
	Store
	SignalStore
	SendLog
	Registry

	// ListArchive returns every archive entry, by account id and then
	// archive time.
	ListArchive(ctx context.Context) ([]ArchiveEntry, error)

	// PruneArchive removes the archive entries archived before t and
	// returns how many. Pruning is not fenced by any lease.
	PruneArchive(ctx context.Context, before time.Time) (int, error)

	// IDs returns the ids of the stored devices in ascending order.
	IDs(ctx context.Context) ([]string, error)

	// LoadSetting returns a fleet-wide setting (one value for every account
	// and, with Redis, for every instance), or an error wrapping
	// ErrNotFound. A name that fails ValidateSettingName is an error
	// wrapping ErrInvalidSetting.
	LoadSetting(ctx context.Context, name string) (string, error)

	// SaveSetting writes a fleet-wide setting; a bad name or a value over
	// MaxSettingValueLen is an error wrapping ErrInvalidSetting. Settings
	// are not fenced by any lease.
	SaveSetting(ctx context.Context, name, value string) error

	// Close releases the store. It is idempotent; any other method called
	// after Close returns an error wrapping ErrClosed.
	Close() error
}

// LIDMap reads the LID <-> phone-number user mapping that Store.Save keeps
// from each paired device's JID and LID (and Delete and Archive drop). Both
// stores implement it beside Store; after Close its methods return an error
// wrapping ErrClosed.
type LIDMap interface {
	// PNForLID returns the phone-number user ("15551234567") for a LID user
	// ("123456789012345"), or an error wrapping ErrNotFound.
	PNForLID(ctx context.Context, lidUser string) (string, error)

	// LIDForPN returns the LID user for a phone-number user, or an error
	// wrapping ErrNotFound.
	LIDForPN(ctx context.Context, pnUser string) (string, error)
}
