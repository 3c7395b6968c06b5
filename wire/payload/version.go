package payload

import (
	"crypto/md5"
	"fmt"
	"strconv"
	"strings"
)

// Version is a WhatsApp Web version number, sent in the user agent and hashed
// into the registration build hash.
type Version struct {
	Primary, Secondary, Tertiary uint32
}

// DefaultVersion returns the version sent when a builder's Version is zero:
// 2.3000.1045649367, the constant of whatsmeow HEAD.
func DefaultVersion() Version { return Version{2, 3000, 1045649367} }

// PinnedVersion returns 2.3000.1031080782, the version of the whatsmeow
// release that produced the protocol test vectors.
func PinnedVersion() Version { return Version{2, 3000, 1031080782} }

// Compare returns -1, 0 or +1 as v is older than, the same as or newer
// than w.
func (v Version) Compare(w Version) int {
	for _, p := range [...][2]uint32{{v.Primary, w.Primary}, {v.Secondary, w.Secondary}, {v.Tertiary, w.Tertiary}} {
		switch {
		case p[0] < p[1]:
			return -1
		case p[0] > p[1]:
			return 1
		}
	}
	return 0
}

// IsZero reports whether v is the zero Version (meaning "use the default").
func (v Version) IsZero() bool { return v == Version{} }

// String returns the dotted form, e.g. "2.3000.1031080782".
func (v Version) String() string {
	var b [32]byte
	out := strconv.AppendUint(b[:0], uint64(v.Primary), 10)
	out = append(out, '.')
	out = strconv.AppendUint(out, uint64(v.Secondary), 10)
	out = append(out, '.')
	out = strconv.AppendUint(out, uint64(v.Tertiary), 10)
	return string(out)
}

// ParseVersion parses the dotted form "primary.secondary.tertiary" (decimal,
// each part fitting in 32 bits, primary not zero), as found in configuration.
func ParseVersion(s string) (Version, error) {
	if len(s) > maxVersionLen {
		return Version{}, fmt.Errorf("%w: longer than %d bytes", ErrBadVersion, maxVersionLen)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrBadVersion, len(parts))
	}
	var n [3]uint32
	for i, p := range parts {
		if p == "" || p[0] < '0' || p[0] > '9' || (p[0] == '0' && len(p) > 1) {
			return Version{}, fmt.Errorf("%w: part %d is not a decimal number without leading zeros", ErrBadVersion, i+1)
		}
		u, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("%w: part %d is not a 32-bit decimal number", ErrBadVersion, i+1)
		}
		n[i] = uint32(u)
	}
	v := Version{n[0], n[1], n[2]}
	if err := v.validate(); err != nil {
		return Version{}, err
	}
	return v, nil
}

// maxVersionLen bounds ParseVersion's input: three 10-digit numbers and two
// dots, with room for leading zeros.
const maxVersionLen = 64

func (v Version) validate() error {
	if v.Primary == 0 {
		return fmt.Errorf("%w: primary part is zero", ErrBadVersion)
	}
	return nil
}

// orDefault returns v, or DefaultVersion when v is zero.
func (v Version) orDefault() Version {
	if v.IsZero() {
		return DefaultVersion()
	}
	return v
}

// BuildHash returns the registration build hash of v: the MD5 digest of its
// dotted string form (PROTOCOL.md 5.2). MD5 is what the protocol uses here; it
// is an identifier, not a security measure.
func BuildHash(v Version) [16]byte {
	return md5.Sum([]byte(v.String()))
}
