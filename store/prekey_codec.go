package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// One-time prekey record encoding, shared by every Store like the device
// record. Version 1, integers big-endian:
//
//	magic "WFP" (3) | version (1) = 1 | flags (1)
//	ID     u24 (3)
//	Pub    32
//	Priv   flagSealed clear: 32 bytes;
//	       flagSealed set: u16 length + Sealer blob of
//	       (u8 length + account ID, u24 ID, Priv 32)
//	CRC-32C u32 over everything before it
//
// A record in the clear is 76 bytes. The sealed form binds the private key
// to its account and ID, so sealed bytes cannot be transplanted into
// another key's record. The only flag is flagSealed.
//
// DecodePreKey rejects with ErrCorrupt: a wrong magic, an unknown version,
// unknown flags, a checksum mismatch, truncated or trailing bytes, a sealed
// blob longer than its limit, sealed bytes of another account or ID, and a
// key that fails Validate.
const (
	preKeyMagic   = "WFP"
	preKeyVersion = 1

	maxPreKeySealedLen = 512
	preKeyHeaderLen    = 5 + 3 + 32

	// MaxPreKeyRecordLen bounds an encoded prekey record; DecodePreKey
	// refuses anything longer.
	MaxPreKeyRecordLen = preKeyHeaderLen + 2 + maxPreKeySealedLen + 4
)

// EncodePreKey validates k and encodes it as a record of account id. With a
// non-nil sealer the private key is sealed; with nil it is in the clear.
func EncodePreKey(id string, k PreKey, sealer Sealer) ([]byte, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return encodePreKey(id, k, sealer)
}

// encodePreKey is EncodePreKey for a valid id and key.
func encodePreKey(id string, k PreKey, sealer Sealer) ([]byte, error) {
	var flags byte
	var sealed []byte
	if sealer != nil {
		flags |= flagSealed
		plain := make([]byte, 0, 1+len(id)+3+32)
		plain = append(plain, byte(len(id)))
		plain = append(plain, id...)
		plain = appendU24(plain, k.ID)
		plain = append(plain, k.Priv[:]...)
		var err error
		sealed, err = sealer.Seal(plain)
		clear(plain)
		if err != nil {
			return nil, fmt.Errorf("store: seal prekey %d of %q: %w", k.ID, id, err)
		}
		if len(sealed) > maxPreKeySealedLen {
			return nil, fmt.Errorf("store: sealer output of %d bytes exceeds %d", len(sealed), maxPreKeySealedLen)
		}
	}
	b := make([]byte, 0, preKeyHeaderLen+2+32+len(sealed)+4)
	b = append(b, preKeyMagic...)
	b = append(b, preKeyVersion, flags)
	b = appendU24(b, k.ID)
	b = append(b, k.Pub[:]...)
	if sealed != nil {
		b = appendBytes16(b, sealed)
	} else {
		b = append(b, k.Priv[:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable)), nil
}

func appendU24(b []byte, v uint32) []byte { return append(b, byte(v>>16), byte(v>>8), byte(v)) }

// DecodePreKey decodes a prekey record of account id. A sealed record needs
// a sealer (ErrNoSealer otherwise) and fails with ErrWrongKey under another
// key; a record in the clear decodes with or without one, and
// RecordInfo.Sealed tells the caller it may re-save it sealed. It does not
// retain data.
func DecodePreKey(id string, data []byte, sealer Sealer) (PreKey, RecordInfo, error) {
	var info RecordInfo
	if len(data) > MaxPreKeyRecordLen {
		return PreKey{}, info, fmt.Errorf("%w: prekey record is %d bytes, longer than %d", ErrCorrupt, len(data), MaxPreKeyRecordLen)
	}
	if len(data) < preKeyHeaderLen+4 || string(data[:3]) != preKeyMagic {
		return PreKey{}, info, fmt.Errorf("%w: not a prekey record", ErrCorrupt)
	}
	info.Version = int(data[3])
	if info.Version != preKeyVersion {
		return PreKey{}, info, fmt.Errorf("%w: unknown prekey record version %d", ErrCorrupt, info.Version)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return PreKey{}, info, fmt.Errorf("%w: prekey checksum mismatch", ErrCorrupt)
	}
	flags := data[4]
	if flags&^flagSealed != 0 {
		return PreKey{}, info, fmt.Errorf("%w: unknown prekey flags %#x", ErrCorrupt, flags)
	}
	info.Sealed = flags&flagSealed != 0

	r := reader{b: body[5:]}
	var k PreKey
	k.ID = r.u24("ID")
	r.fixed(k.Pub[:], "Pub")
	var secret []byte
	if info.Sealed {
		secret = r.bytes16(maxPreKeySealedLen, "sealed Priv")
	} else {
		secret = r.take(32, "Priv")
	}
	if r.err != nil {
		return PreKey{}, info, r.err
	}
	if len(r.b) != 0 {
		return PreKey{}, info, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b))
	}
	if info.Sealed {
		if sealer == nil {
			return PreKey{}, info, fmt.Errorf("store: decode prekey %d of %q: %w", k.ID, id, ErrNoSealer)
		}
		plain, err := sealer.Open(secret)
		if err != nil {
			return PreKey{}, info, fmt.Errorf("store: open sealed prekey %d of %q: %w", k.ID, id, err)
		}
		defer clear(plain)
		n := len(id)
		if len(plain) != 1+n+3+32 || int(plain[0]) != n || string(plain[1:1+n]) != id ||
			u24(plain[1+n:]) != k.ID {
			return PreKey{}, info, fmt.Errorf("%w: sealed prekey does not belong to key %d of %q", ErrCorrupt, k.ID, id)
		}
		secret = plain[1+n+3:]
	}
	copy(k.Priv[:], secret)
	// The pair was checked when it was written (AddPreKeys); the checksum
	// and the seal keep it intact since, so reading does not pay a second
	// X25519 operation per key.
	if k.ID == 0 || k.ID > MaxPreKeyID {
		return PreKey{}, info, fmt.Errorf("%w: decoded prekey ID %d is outside 1..%d", ErrCorrupt, k.ID, MaxPreKeyID)
	}
	return k, info, nil
}

func (r *reader) u24(field string) uint32 {
	if v := r.take(3, field); v != nil {
		return u24(v)
	}
	return 0
}

func u24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
