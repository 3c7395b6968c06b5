package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Record encoding, shared by every Store so that a device can move between
// stores byte for byte. Version 1, all integers big-endian:
//
//	magic "WFD" (3) | version (1) = 1 | flags (1)
//	ID                  u8 length + bytes
//	NoiseKey.Pub        32
//	IdentityKey.Pub     32
//	SignedPreKey.ID     u32
//	SignedPreKey.Pub    32
//	SignedPreKey.Sig    64
//	RegistrationID      u32
//	JID, LID            u8 length + bytes each
//	BusinessName        u16 length + bytes
//	Platform            u16 length + bytes
//	Account             u16 length + bytes
//	MainDeviceIdentity  32
//	PairedAt            i64 Unix seconds + u32 nanoseconds (zero unless flagPairedAt)
//	secrets             flagSealed clear: 128 bytes, the four secrets below in order;
//	                    flagSealed set: u16 length + Sealer blob of
//	                    (u8 length + ID) followed by the same 128 bytes
//	CRC-32C             u32 over everything before it
//
// The secrets are NoiseKey.Priv, IdentityKey.Priv, SignedPreKey.Priv and
// AdvSecret. The sealed form repeats the ID inside the ciphertext so sealed
// secrets cannot be transplanted into another device's record. PairedAt is
// kept to the nanosecond and loads in UTC.
//
// Decode rejects with ErrCorrupt: a wrong magic, an unknown version, unknown
// flags, a checksum mismatch, truncated or trailing bytes, lengths past the
// field limits, and a result that fails Validate other than by a public half
// that does not match its private half: every record is written by Encode,
// which checks that agreement, so Decode does not spend three X25519
// multiplications per load re-deriving it. A changed byte anywhere in the
// record, public halves included, fails the CRC-32C; sealed secrets are also
// authenticated by the Sealer (AES-GCM), which covers the private halves but
// not the public ones. What neither catches is a deliberate edit of a public
// half with the checksum recomputed, by someone who can write the store (and
// could as well write a whole record of their own): a wrong NoiseKey.Pub
// then fails the first Noise handshake (the server derives its keys from the
// public key sent and cannot read the client's payload), a wrong
// IdentityKey.Pub or SignedPreKey.Pub is what the device would publish.
const (
	codecMagic   = "WFD"
	codecVersion = 1

	flagSealed   = 1 << 0
	flagPairedAt = 1 << 1
	knownFlags   = flagSealed | flagPairedAt

	secretsLen   = 4 * 32
	maxSealedLen = 4096
	// MaxRecordLen bounds an encoded record; Decode refuses anything longer.
	MaxRecordLen = 5 + 1 + MaxIDLen + 32*2 + 4 + 32 + 64 + 4 + 2*(1+MaxJIDLen) +
		2 + MaxBusinessNameLen + 2 + MaxPlatformLen + 2 + MaxAccountLen + 32 + 12 +
		2 + maxSealedLen + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// RecordInfo describes a decoded record.
type RecordInfo struct {
	Version int  // encoding version (1)
	Sealed  bool // secrets were sealed; false means a store with a Sealer should re-save it
}

// Encode validates d and encodes it. With a non-nil sealer the secrets are
// sealed; with nil they are stored in the clear.
func Encode(d *Device, sealer Sealer) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return encode(d, sealer)
}

// encode is Encode for a device already validated.
func encode(d *Device, sealer Sealer) ([]byte, error) {
	var secrets [secretsLen]byte
	copy(secrets[0:], d.NoiseKey.Priv[:])
	copy(secrets[32:], d.IdentityKey.Priv[:])
	copy(secrets[64:], d.SignedPreKey.Priv[:])
	copy(secrets[96:], d.AdvSecret[:])
	defer clear(secrets[:])

	var flags byte
	if !d.PairedAt.IsZero() {
		flags |= flagPairedAt
	}
	var sealed []byte
	if sealer != nil {
		flags |= flagSealed
		plain := make([]byte, 0, 1+len(d.ID)+secretsLen)
		plain = append(plain, byte(len(d.ID)))
		plain = append(plain, d.ID...)
		plain = append(plain, secrets[:]...)
		var err error
		sealed, err = sealer.Seal(plain)
		clear(plain)
		if err != nil {
			return nil, fmt.Errorf("store: seal secrets of %q: %w", d.ID, err)
		}
		if len(sealed) > maxSealedLen {
			return nil, fmt.Errorf("store: sealer output of %d bytes exceeds %d", len(sealed), maxSealedLen)
		}
	}

	b := make([]byte, 0, 512+len(d.Account)+len(d.BusinessName)+len(d.Platform)+len(sealed))
	b = append(b, codecMagic...)
	b = append(b, codecVersion, flags)
	b = appendStr8(b, d.ID)
	b = append(b, d.NoiseKey.Pub[:]...)
	b = append(b, d.IdentityKey.Pub[:]...)
	b = binary.BigEndian.AppendUint32(b, d.SignedPreKey.ID)
	b = append(b, d.SignedPreKey.Pub[:]...)
	b = append(b, d.SignedPreKey.Signature[:]...)
	b = binary.BigEndian.AppendUint32(b, d.RegistrationID)
	b = appendStr8(b, d.JID)
	b = appendStr8(b, d.LID)
	b = appendBytes16(b, []byte(d.BusinessName))
	b = appendBytes16(b, []byte(d.Platform))
	b = appendBytes16(b, d.Account)
	b = append(b, d.MainDeviceIdentity[:]...)
	var sec int64
	var nsec uint32
	if !d.PairedAt.IsZero() {
		sec, nsec = d.PairedAt.Unix(), uint32(d.PairedAt.Nanosecond())
	}
	b = binary.BigEndian.AppendUint64(b, uint64(sec))
	b = binary.BigEndian.AppendUint32(b, nsec)
	if sealed != nil {
		b = appendBytes16(b, sealed)
	} else {
		b = append(b, secrets[:]...)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	return b, nil
}

func appendStr8(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendBytes16(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// Decode decodes a record. A sealed record needs a sealer (ErrNoSealer
// otherwise) and fails with ErrWrongKey under another key; a record stored
// in the clear decodes with or without a sealer, and RecordInfo.Sealed
// tells the caller it may re-save it sealed. Decode does not retain data.
func Decode(data []byte, sealer Sealer) (*Device, RecordInfo, error) {
	var info RecordInfo
	if len(data) > MaxRecordLen {
		return nil, info, fmt.Errorf("%w: record is %d bytes, longer than %d", ErrCorrupt, len(data), MaxRecordLen)
	}
	if len(data) < 5+4 || string(data[:3]) != codecMagic {
		return nil, info, fmt.Errorf("%w: not a device record", ErrCorrupt)
	}
	info.Version = int(data[3])
	if info.Version != codecVersion {
		return nil, info, fmt.Errorf("%w: unknown record version %d", ErrCorrupt, info.Version)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, info, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	flags := data[4]
	if flags&^knownFlags != 0 {
		return nil, info, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	info.Sealed = flags&flagSealed != 0

	r := reader{b: body[5:]}
	d := &Device{}
	d.ID = r.str8(MaxIDLen, "ID")
	r.fixed(d.NoiseKey.Pub[:], "NoiseKey.Pub")
	r.fixed(d.IdentityKey.Pub[:], "IdentityKey.Pub")
	d.SignedPreKey.ID = r.u32("SignedPreKey.ID")
	r.fixed(d.SignedPreKey.Pub[:], "SignedPreKey.Pub")
	r.fixed(d.SignedPreKey.Signature[:], "SignedPreKey.Signature")
	d.RegistrationID = r.u32("RegistrationID")
	d.JID = r.str8(MaxJIDLen, "JID")
	d.LID = r.str8(MaxJIDLen, "LID")
	d.BusinessName = string(r.bytes16(MaxBusinessNameLen, "BusinessName"))
	d.Platform = string(r.bytes16(MaxPlatformLen, "Platform"))
	if acct := r.bytes16(MaxAccountLen, "Account"); len(acct) > 0 {
		d.Account = append([]byte(nil), acct...)
	}
	r.fixed(d.MainDeviceIdentity[:], "MainDeviceIdentity")
	sec := int64(r.u64("PairedAt"))
	nsec := r.u32("PairedAt")
	var secrets []byte
	if info.Sealed {
		secrets = r.bytes16(maxSealedLen, "sealed secrets")
	} else {
		secrets = r.take(secretsLen, "secrets")
	}
	if r.err != nil {
		return nil, info, r.err
	}
	if len(r.b) != 0 {
		return nil, info, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b))
	}
	if flags&flagPairedAt != 0 {
		if nsec >= 1e9 {
			return nil, info, fmt.Errorf("%w: PairedAt nanoseconds out of range", ErrCorrupt)
		}
		d.PairedAt = time.Unix(sec, int64(nsec)).UTC()
	} else if sec != 0 || nsec != 0 {
		return nil, info, fmt.Errorf("%w: PairedAt set without its flag", ErrCorrupt)
	}

	if info.Sealed {
		if sealer == nil {
			return nil, info, fmt.Errorf("store: decode %q: %w", d.ID, ErrNoSealer)
		}
		plain, err := sealer.Open(secrets)
		if err != nil {
			return nil, info, fmt.Errorf("store: open sealed secrets of %q: %w", d.ID, err)
		}
		defer clear(plain)
		if len(plain) != 1+len(d.ID)+secretsLen || int(plain[0]) != len(d.ID) || string(plain[1:1+len(d.ID)]) != d.ID {
			return nil, info, fmt.Errorf("%w: sealed secrets do not belong to %q", ErrCorrupt, d.ID)
		}
		secrets = plain[1+len(d.ID):]
	}
	copy(d.NoiseKey.Priv[:], secrets[0:32])
	copy(d.IdentityKey.Priv[:], secrets[32:64])
	copy(d.SignedPreKey.Priv[:], secrets[64:96])
	copy(d.AdvSecret[:], secrets[96:128])

	// Encode checked that the public halves match the private ones when the
	// record was written; they are not re-derived here (see the record
	// comment above).
	if err := d.validate(false); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return nil, info, fmt.Errorf("%w: decoded device is invalid: %s: %s", ErrCorrupt, ve.Field, ve.Problem)
		}
		return nil, info, fmt.Errorf("%w: decoded device is invalid", ErrCorrupt)
	}
	return d, info, nil
}

// reader consumes a byte slice; the first failure sticks and turns every
// later read into a no-op, so Decode checks r.err once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("%w: truncated at %s", ErrCorrupt, field)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) fixed(dst []byte, field string) { copy(dst, r.take(len(dst), field)) }

func (r *reader) u32(field string) uint32 {
	if v := r.take(4, field); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if v := r.take(8, field); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str8(limit int, field string) string {
	n := r.take(1, field)
	if n == nil {
		return ""
	}
	if int(n[0]) > limit {
		r.err = fmt.Errorf("%w: %s length %d exceeds %d", ErrCorrupt, field, n[0], limit)
		return ""
	}
	return string(r.take(int(n[0]), field))
}

func (r *reader) bytes16(limit int, field string) []byte {
	n := r.take(2, field)
	if n == nil {
		return nil
	}
	l := int(binary.BigEndian.Uint16(n))
	if l > limit {
		r.err = fmt.Errorf("%w: %s length %d exceeds %d", ErrCorrupt, field, l, limit)
		return nil
	}
	return r.take(l, field)
}
