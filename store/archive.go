package store

import (
	"errors"
	"fmt"
	"time"
)

// ErrPaired: RestoreArchived refused to replace the account's current
// device because it is paired; nothing was changed.
var ErrPaired = errors.New("store: the account has a paired device")

// ArchiveEntry describes one archived device: what a server-initiated wipe
// set aside instead of deleting (Store.Archive). It carries no secrets.
type ArchiveEntry struct {
	// ID is the account the device belonged to.
	ID string `json:"id"`
	// Key names the entry among the account's archived devices: the
	// archive time in ArchiveKeyLayout, which sorts in time order.
	Key string `json:"key"`
	// ArchivedAt is when the device was archived (UTC).
	ArchivedAt time.Time `json:"archived_at"`
	// Reason says why (the server's failure, in words).
	Reason string `json:"reason"`
	// JID is the device's JID; empty when it was not paired.
	JID string `json:"jid,omitempty"`
	// PreKeys is how many one-time prekeys were archived with it.
	PreKeys int `json:"prekeys"`
}

// ArchiveKeyLayout is the time layout of ArchiveEntry.Key.
const ArchiveKeyLayout = "20060102T150405.000000000Z"

// MaxArchiveReasonLen bounds ArchiveEntry.Reason; Archive cuts a longer one.
const MaxArchiveReasonLen = 512

// ArchiveKey returns the entry key of a device archived at t.
func ArchiveKey(t time.Time) string { return t.UTC().Format(ArchiveKeyLayout) }

// ParseArchiveKey returns the archive time a key names, or an error
// wrapping ErrNotFound for a string that cannot name an entry.
func ParseArchiveKey(key string) (time.Time, error) {
	t, err := time.Parse(ArchiveKeyLayout, key)
	if err != nil || ArchiveKey(t) != key {
		return time.Time{}, fmt.Errorf("%w: %q is not an archive entry key (like %s)", ErrNotFound, key, ArchiveKey(time.Unix(0, 0)))
	}
	return t, nil
}

// ArchiveReason trims a reason to MaxArchiveReasonLen bytes (on a rune
// boundary), as every Store keeps it.
func ArchiveReason(reason string) string {
	if len(reason) <= MaxArchiveReasonLen {
		return reason
	}
	cut := MaxArchiveReasonLen
	for cut > 0 && reason[cut]&0xC0 == 0x80 {
		cut--
	}
	return reason[:cut]
}
