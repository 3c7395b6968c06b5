package store

import (
	"fmt"
	"log/slog"
	"strconv"

	"github.com/wafleet/wafleet/crypto"
)

// MaxPreKeyID is the largest one-time prekey ID: IDs travel as 3 bytes.
const MaxPreKeyID = 1<<24 - 1

// MaxPreKeysPerAdd bounds one AddPreKeys call (the first upload of a device
// is 812 keys, later ones 50).
const MaxPreKeysPerAdd = 4096

// PreKey is a one-time Signal prekey: an ID in 1..MaxPreKeyID and an X25519 pair.
// Like KeyPair it never prints its private key (String/Format/LogValue).
type PreKey struct {
	ID uint32
	KeyPair

	// made is the pair NewPreKey generated, whose public half it derived:
	// while KeyPair still equals it, Validate does not derive it again. A
	// key built or decoded anywhere else has none, and one whose halves
	// were changed since no longer matches it: both are checked in full.
	made KeyPair
}

// NewPreKey generates a one-time prekey with id. Its public half is derived
// once, here: AddPreKeys (CheckPreKeys, Validate) does not derive it again
// while the pair is unchanged.
func NewPreKey(id uint32) (PreKey, error) {
	priv, pub, err := crypto.GeneratePair()
	if err != nil {
		return PreKey{}, err
	}
	kp := KeyPair{Priv: priv, Pub: pub}
	return PreKey{ID: id, KeyPair: kp, made: kp}, nil
}

// String describes the prekey without revealing any key bytes.
func (k PreKey) String() string {
	return "PreKey(id=" + strconv.FormatUint(uint64(k.ID), 10) + ", " + k.KeyPair.String() + ")"
}

// Format makes every fmt verb print String (the embedded KeyPair would
// otherwise lend its own Format and hide the ID).
func (k PreKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue keeps key bytes out of structured logs.
func (k PreKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Validate checks that the ID is in 1..MaxPreKeyID and that Pub is the
// X25519 public key of a non-zero Priv (derived again unless the pair is
// the one NewPreKey made). Errors are *PreKeyError.
func (k PreKey) Validate() error {
	if k.ID == 0 || k.ID > MaxPreKeyID {
		return &PreKeyError{ID: k.ID, Problem: fmt.Sprintf("ID is outside 1..%d", MaxPreKeyID)}
	}
	if err := checkKeyPair("KeyPair", k.KeyPair, k.KeyPair != k.made); err != nil {
		if ve, ok := err.(*ValidationError); ok {
			return &PreKeyError{ID: k.ID, Problem: ve.Field + ": " + ve.Problem}
		}
		return &PreKeyError{ID: k.ID, Problem: "invalid key pair"}
	}
	return nil
}

// PreKeyCounts summarises an account's stored one-time prekeys.
type PreKeyCounts struct {
	Stored   int    // keys stored (uploaded or not)
	Uploaded int    // keys marked uploaded
	MaxID    uint32 // largest ID ever stored for the account (0: none); new keys continue after it
}

// PreKeyError says which one-time prekey AddPreKeys refused and why. It
// never contains key bytes. errors.Is(err, ErrInvalidPreKey) holds for it,
// and so does errors.Is(err, ErrInvalidDevice): the prekeys are part of the
// device's state, and callers that treat an invalid device as a programming
// error need no new case.
type PreKeyError struct {
	ID      uint32 // the key's ID as given
	Problem string // e.g. "already stored"
}

func (e *PreKeyError) Error() string {
	return "store: invalid prekey " + strconv.FormatUint(uint64(e.ID), 10) + ": " + e.Problem
}

// Is makes errors.Is(err, ErrInvalidPreKey) and errors.Is(err,
// ErrInvalidDevice) true.
func (e *PreKeyError) Is(target error) bool {
	return target == ErrInvalidPreKey || target == ErrInvalidDevice
}

// CheckPreKeys validates a batch for AddPreKeys: at most MaxPreKeysPerAdd
// keys, each valid, no ID twice. Whether an ID is already stored is for the
// store to check. Errors are *PreKeyError.
func CheckPreKeys(keys []PreKey) error {
	if len(keys) > MaxPreKeysPerAdd {
		return &PreKeyError{ID: keys[MaxPreKeysPerAdd].ID, Problem: fmt.Sprintf("past the limit of %d keys per call (%d given)", MaxPreKeysPerAdd, len(keys))}
	}
	seen := make(map[uint32]struct{}, len(keys))
	for _, k := range keys {
		if err := k.Validate(); err != nil {
			return err
		}
		if _, dup := seen[k.ID]; dup {
			return &PreKeyError{ID: k.ID, Problem: "appears twice in the batch"}
		}
		seen[k.ID] = struct{}{}
	}
	return nil
}
