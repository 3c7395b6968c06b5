package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

// ErrInvalidSignal: ApplySignal refused a change (a malformed address or
// group, a record over MaxSignalRecordLen, too many changes, one key
// twice); nothing was written.
var ErrInvalidSignal = errors.New("store: invalid signal change")

// SignalStore keeps an account's Signal protocol state beside its device:
// the sessions with each peer device, the peers' identity keys (trust on
// first use), the sender keys of groups, and the consumption of one-time
// prekeys (Store.RemovePreKey's key, in the same write). Records are the
// signal package's stored forms (signal.Session and signal.SenderKey
// MarshalBinary), opaque here; sessions and sender keys hold chain keys
// and are sealed at rest with the store's Sealer, identities are public
// and are not.
//
// Peers are named by PeerAddress ("USER.DOMAIN:DEVICE"); a phone-number
// address and a LID address are distinct peers. Every write goes through
// ApplySignal, all or nothing in one transaction (one fenced script in
// Redis, needing the account's lease like device writes), so that the
// caller writes everything a decrypted stanza changed before it
// acknowledges the stanza, together with the stanza's events
// (SignalChanges.Events). The state goes with the device: Delete drops
// it, Archive moves it into the archive entry and RestoreArchived puts it
// back, like the one-time prekeys.
type SignalStore interface {
	// Session returns the stored session record with addr, or an error
	// wrapping ErrNotFound.
	Session(ctx context.Context, id, addr string) ([]byte, error)

	// PeerIdentity returns the identity key stored for addr, or an error
	// wrapping ErrNotFound.
	PeerIdentity(ctx context.Context, id, addr string) ([32]byte, error)

	// SenderKey returns the sender key record of sender in group, or an
	// error wrapping ErrNotFound.
	SenderKey(ctx context.Context, id, group, sender string) ([]byte, error)

	// ApplySignal writes c for account id, all or nothing. The device must
	// be stored (an error wrapping ErrNotFound otherwise). Identities are
	// trusted on first use: a new one is stored, and one that replaces a
	// different key is stored as well and named in the result, never an
	// error. A change that fails CheckSignalChanges is an error wrapping
	// ErrInvalidSignal and writes nothing. An empty c writes nothing.
	//
	// c.Events are appended to the store's outbox (as Outbox.Append) no
	// later than the state is written, never after: the bbolt store
	// writes them in the same transaction, so that one fsync makes both
	// durable; the Redis store appends them first, in a round trip of
	// their own (its outbox stream is outside the account's hash slot,
	// which a fenced script cannot reach in a Cluster). So an error may
	// leave the events appended without the state (the caller repeats
	// them when it decrypts the redelivered stanza again), never the
	// state without its events.
	//
	// Concurrent calls of different accounts may share one transaction
	// (the bbolt store's group commit: one fsync for all); each call
	// still returns only once its own changes are durable, and fails
	// alone.
	ApplySignal(ctx context.Context, id string, c SignalChanges) (SignalApplied, error)
}

// SignalChanges is one batch of Signal state changes of an account, e.g.
// what decrypting one pkmsg changed: the session, the sender's identity and
// the one-time prekey it consumed.
type SignalChanges struct {
	Sessions   []SessionChange
	Identities []IdentityChange
	SenderKeys []SenderKeyChange
	// UsedPreKey is the one-time prekey a new session consumed, removed as
	// RemovePreKey does (0: none; absent: not an error).
	UsedPreKey uint32
	// Events are outbox records of the stanza that made the changes (its
	// message event), appended to the store's outbox no later than the
	// changes (see ApplySignal). At most MaxSignalEvents.
	Events []OutboxRecord
}

// Empty reports whether c changes nothing.
func (c SignalChanges) Empty() bool {
	return len(c.Sessions) == 0 && len(c.Identities) == 0 && len(c.SenderKeys) == 0 && c.UsedPreKey == 0 &&
		len(c.Events) == 0
}

// SessionChange stores (Record non-nil) or deletes (Record nil) the
// session with Addr.
type SessionChange struct {
	Addr   string
	Record []byte
}

// IdentityChange records the identity key Addr presented.
type IdentityChange struct {
	Addr string
	Key  [32]byte
}

// SenderKeyChange stores (Record non-nil) or deletes (Record nil) the
// sender key of Sender in Group.
type SenderKeyChange struct {
	Group, Sender string
	Record        []byte
}

// SignalApplied says what ApplySignal found.
type SignalApplied struct {
	// ChangedIdentities are the addresses whose stored identity key was
	// replaced by a different one, in the order of the changes: the caller
	// emits identity_changed for each.
	ChangedIdentities []string
}

// Bounds of the Signal state.
const (
	// MaxSignalRecordLen bounds a session or sender key record as the
	// caller gives it. A session is a few KB; what makes one larger is
	// the keys of skipped messages (36 bytes each, up to
	// signal.MaxSkippedKeys per chain): a current state with five full
	// receiver chains is about 360 KB.
	MaxSignalRecordLen = 1 << 20
	// MaxSignalApplyLen bounds the records of one ApplySignal together.
	MaxSignalApplyLen = 8 << 20
	// MaxSignalChanges bounds the changes of one ApplySignal call
	// (sessions, identities and sender keys together).
	MaxSignalChanges = 1024
	// MaxPeerUserLen bounds the user part of a PeerAddress.
	MaxPeerUserLen = 32
	// MaxGroupIDLen bounds a sender key's group.
	MaxGroupIDLen = 128
	// MaxSignalEvents bounds the outbox records of one ApplySignal call
	// (a stanza gives one message event).
	MaxSignalEvents = 16
)

// PeerAddress returns the canonical address of a peer device:
// "USER.DOMAIN:DEVICE" with the decimal AD domain type (0 phone number,
// 1 LID, 128 and 129 hosted, as wire/jid numbers them) and device number,
// e.g. "15551234567.0:3" or "123456789012345.1:0".
func PeerAddress(user string, domain uint8, device uint16) string {
	return user + "." + strconv.FormatUint(uint64(domain), 10) + ":" + strconv.FormatUint(uint64(device), 10)
}

// ValidatePeerAddress checks that addr is in the canonical form
// PeerAddress returns: a user of 1..MaxPeerUserLen digits, a domain in
// 0..255 and a device in 0..65535, both decimal without leading zeros.
func ValidatePeerAddress(addr string) error {
	bad := func(why string) error { return fmt.Errorf("%w: peer address %q %s", ErrInvalidSignal, addr, why) }
	dot, colon := -1, -1
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c == '.' && dot < 0:
			dot = i
		case c == ':' && dot >= 0 && colon < 0:
			colon = i
		case c < '0' || c > '9':
			return bad("is not USER.DOMAIN:DEVICE")
		}
	}
	if dot <= 0 || dot > MaxPeerUserLen || colon < 0 {
		return bad("is not USER.DOMAIN:DEVICE with a user of 1 to " + strconv.Itoa(MaxPeerUserLen) + " digits")
	}
	if !canonicalUint(addr[dot+1:colon], 255) || !canonicalUint(addr[colon+1:], 65535) {
		return bad("has a domain or device out of range or with leading zeros")
	}
	return nil
}

func canonicalUint(s string, limit uint64) bool {
	v, err := strconv.ParseUint(s, 10, 32)
	return err == nil && v <= limit && strconv.FormatUint(v, 10) == s
}

// ValidateGroupID checks a sender key's group: 1..MaxGroupIDLen printable
// ASCII characters without spaces (a group JID such as
// "120363012345678901@g.us").
func ValidateGroupID(group string) error {
	if group == "" || len(group) > MaxGroupIDLen {
		return fmt.Errorf("%w: group of %d bytes, not 1 to %d", ErrInvalidSignal, len(group), MaxGroupIDLen)
	}
	for i := 0; i < len(group); i++ {
		if group[i] <= ' ' || group[i] > '~' {
			return fmt.Errorf("%w: group %q has a character that is not printable ASCII", ErrInvalidSignal, group)
		}
	}
	return nil
}

// Keys of an account's Signal records, shared by every store: one flat
// keyspace per account (a bbolt bucket, a Redis hash) where a session is
// "s:ADDR", an identity "i:ADDR" and a sender key "k:GROUP SENDER" (a
// group has no spaces).

// SessionKey is the key of the session with addr.
func SessionKey(addr string) string { return "s:" + addr }

// IdentityKey is the key of the identity of addr.
func IdentityKey(addr string) string { return "i:" + addr }

// SenderKeyKey is the key of the sender key of sender in group.
func SenderKeyKey(group, sender string) string { return "k:" + group + " " + sender }

// CheckSignalChanges validates a batch for ApplySignal: at most
// MaxSignalChanges changes, canonical addresses and groups, records of at
// most MaxSignalRecordLen bytes (empty records are refused: nil deletes)
// and MaxSignalApplyLen together, no key twice, a prekey ID within
// MaxPreKeyID, at most MaxSignalEvents events that Outbox.Append accepts.
func CheckSignalChanges(c SignalChanges) error {
	if n := len(c.Sessions) + len(c.Identities) + len(c.SenderKeys); n > MaxSignalChanges {
		return fmt.Errorf("%w: %d changes, more than %d", ErrInvalidSignal, n, MaxSignalChanges)
	}
	if len(c.Events) > MaxSignalEvents {
		return fmt.Errorf("%w: %d events, more than %d", ErrInvalidSignal, len(c.Events), MaxSignalEvents)
	}
	for i, e := range c.Events {
		if problem := outboxRecordProblem(e); problem != "" {
			return fmt.Errorf("%w: event %d: %s", ErrInvalidSignal, i, problem)
		}
	}
	if c.UsedPreKey > MaxPreKeyID {
		return fmt.Errorf("%w: prekey ID %d outside 0..%d", ErrInvalidSignal, c.UsedPreKey, MaxPreKeyID)
	}
	seen := make(map[string]struct{}, len(c.Sessions)+len(c.Identities)+len(c.SenderKeys))
	once := func(k string) error {
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: %q changed twice in one batch", ErrInvalidSignal, k)
		}
		seen[k] = struct{}{}
		return nil
	}
	total := 0
	record := func(what string, rec []byte) error {
		if rec != nil && (len(rec) == 0 || len(rec) > MaxSignalRecordLen) {
			return fmt.Errorf("%w: %s record of %d bytes, not 1 to %d", ErrInvalidSignal, what, len(rec), MaxSignalRecordLen)
		}
		if total += len(rec); total > MaxSignalApplyLen {
			return fmt.Errorf("%w: records of more than %d bytes in one batch", ErrInvalidSignal, MaxSignalApplyLen)
		}
		return nil
	}
	for _, s := range c.Sessions {
		if err := ValidatePeerAddress(s.Addr); err != nil {
			return err
		}
		if err := record("session", s.Record); err != nil {
			return err
		}
		if err := once(SessionKey(s.Addr)); err != nil {
			return err
		}
	}
	for _, i := range c.Identities {
		if err := ValidatePeerAddress(i.Addr); err != nil {
			return err
		}
		if err := once(IdentityKey(i.Addr)); err != nil {
			return err
		}
	}
	for _, k := range c.SenderKeys {
		if err := ValidateGroupID(k.Group); err != nil {
			return err
		}
		if err := ValidatePeerAddress(k.Sender); err != nil {
			return err
		}
		if err := record("sender key", k.Record); err != nil {
			return err
		}
		if err := once(SenderKeyKey(k.Group, k.Sender)); err != nil {
			return err
		}
	}
	return nil
}

// Signal record encoding (sessions and sender keys), shared by every
// store. Version 1, integers big-endian:
//
//	magic "WFS" (3) | version (1) = 1 | flags (1)
//	body   flagSealed clear: the record;
//	       flagSealed set: Sealer blob of
//	       (u8 length + account ID, u16 length + key, the record)
//	CRC-32C u32 over everything before it
//
// The sealed form binds the record to its account and key ("s:ADDR",
// "k:GROUP SENDER"), so sealed bytes cannot be moved to another peer.
// Identities are stored as their 32 bytes, not in this form.
const (
	signalMagic   = "WFS"
	signalVersion = 1
	signalHeader  = 5

	// MaxSignalStoredLen bounds an encoded record: the header, the record,
	// its binding when sealed (account up to 1+255 bytes, key up to 2+512),
	// the Sealer's overhead (AESSealer: 37 bytes; 128 allowed) and the
	// checksum. Stores refuse longer stored values before decoding them.
	MaxSignalStoredLen = signalHeader + MaxSignalRecordLen + (1 + 255) + (2 + 512) + 128 + 4
)

// EncodeSignal encodes rec, the record stored under key of account id,
// sealed with sealer when it is non-nil.
func EncodeSignal(id, key string, rec []byte, sealer Sealer) ([]byte, error) {
	var flags byte
	body := rec
	if sealer != nil {
		flags |= flagSealed
		plain := make([]byte, 0, 1+len(id)+2+len(key)+len(rec))
		plain = append(plain, byte(len(id)))
		plain = append(plain, id...)
		plain = binary.BigEndian.AppendUint16(plain, uint16(len(key)))
		plain = append(plain, key...)
		plain = append(plain, rec...)
		var err error
		body, err = sealer.Seal(plain)
		clear(plain)
		if err != nil {
			return nil, fmt.Errorf("seal signal record %s of %q: %w", key, id, err)
		}
	}
	b := make([]byte, 0, signalHeader+len(body)+4)
	b = append(b, signalMagic...)
	b = append(b, signalVersion, flags)
	b = append(b, body...)
	if sealer != nil {
		clear(body)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable)), nil
}

// DecodeSignal decodes a record stored under key of account id. A sealed
// record without a sealer is ErrNoSealer; a wrong magic, version, flags or
// checksum, or sealed bytes of another account or key, is ErrCorrupt.
func DecodeSignal(id, key string, b []byte, sealer Sealer) ([]byte, RecordInfo, error) {
	var info RecordInfo
	if len(b) < signalHeader+4 || len(b) > MaxSignalStoredLen {
		return nil, info, fmt.Errorf("%w: signal record of %d bytes", ErrCorrupt, len(b))
	}
	if string(b[:3]) != signalMagic || b[3] != signalVersion || b[4]&^flagSealed != 0 {
		return nil, info, fmt.Errorf("%w: not a version %d signal record", ErrCorrupt, signalVersion)
	}
	n := len(b) - 4
	if crc32.Checksum(b[:n], crcTable) != binary.BigEndian.Uint32(b[n:]) {
		return nil, info, fmt.Errorf("%w: signal record checksum mismatch", ErrCorrupt)
	}
	body := b[signalHeader:n]
	if b[4]&flagSealed == 0 {
		if len(body) == 0 || len(body) > MaxSignalRecordLen {
			return nil, info, fmt.Errorf("%w: signal record of %d bytes", ErrCorrupt, len(body))
		}
		return append([]byte(nil), body...), info, nil
	}
	info.Sealed = true
	if sealer == nil {
		return nil, info, ErrNoSealer
	}
	plain, err := sealer.Open(body)
	if err != nil {
		return nil, info, err
	}
	defer clear(plain)
	bind := 1 + len(id) + 2 + len(key)
	if len(plain) <= bind || int(plain[0]) != len(id) || string(plain[1:1+len(id)]) != id ||
		int(binary.BigEndian.Uint16(plain[1+len(id):])) != len(key) || string(plain[3+len(id):bind]) != key {
		return nil, info, fmt.Errorf("%w: sealed signal record belongs to another account or peer", ErrCorrupt)
	}
	if len(plain)-bind > MaxSignalRecordLen {
		return nil, info, fmt.Errorf("%w: signal record of %d bytes", ErrCorrupt, len(plain)-bind)
	}
	return append([]byte(nil), plain[bind:]...), info, nil
}
