package node

// Packed strings (PROTOCOL.md 6.6): two characters per byte, high nibble
// first; an odd length sets bit 7 of the length byte and pads with 15.

// maxPackedChars is the longest string the encoder packs (both reference
// implementations use 127).
const maxPackedChars = 127

const (
	packNone = iota
	packNibble
	packHex
)

// packKind says whether s can be written as NIBBLE_8 (preferred) or HEX_8.
func packKind(s string) int {
	if len(s) > maxPackedChars {
		return packNone
	}
	nibble, hex := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '-' || c == '.':
			hex = false
		case c >= 'A' && c <= 'F':
			nibble = false
		default:
			return packNone
		}
		if !nibble && !hex {
			return packNone
		}
	}
	if nibble {
		return packNibble
	}
	return packHex
}

func nibbleValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c == '-':
		return 10
	case c == '.':
		return 11
	}
	return 15
}

func hexValue(c byte) byte {
	if c >= 'A' {
		return c - 'A' + 10
	}
	return c - '0'
}

// appendPacked writes s (already classified by packKind) with its tag.
func appendPacked(dst []byte, s string, kind int) []byte {
	tag, value := byte(tagNibble8), nibbleValue
	if kind == packHex {
		tag, value = tagHex8, hexValue
	}
	n := (len(s) + 1) / 2
	l := byte(n)
	if len(s)%2 == 1 {
		l |= 0x80
	}
	dst = append(dst, tag, l)
	i := 0
	for ; i+1 < len(s); i += 2 {
		dst = append(dst, value(s[i])<<4|value(s[i+1]))
	}
	if i < len(s) {
		dst = append(dst, value(s[i])<<4|15)
	}
	return dst
}

const nibbleAlphabet = "0123456789-.\x00\x00\x00\x00"
const hexAlphabet = "0123456789ABCDEF"

// unpack appends the characters of packed bytes src to dst. odd drops the
// last (pad) character. Nibble values 12–14 are invalid, and 15 is only
// valid as the pad.
func unpack(dst, src []byte, hex, odd bool) ([]byte, bool) {
	if hex {
		for _, b := range src {
			dst = append(dst, hexAlphabet[b>>4], hexAlphabet[b&15])
		}
		if odd {
			dst = dst[:len(dst)-1]
		}
		return dst, true
	}
	last := len(src) - 1
	for i, b := range src {
		hi, lo := b>>4, b&15
		if hi >= 12 || lo >= 12 && !(odd && i == last) {
			return dst, false
		}
		dst = append(dst, nibbleAlphabet[hi], nibbleAlphabet[lo])
	}
	if odd {
		dst = dst[:len(dst)-1]
	}
	return dst, true
}
