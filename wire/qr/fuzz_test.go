package qr

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every code it accepts
// encodes back to the same fields, and that a rejected code's error does not
// contain a well-formed ADV field.
func FuzzParse(f *testing.F) {
	v, _ := loadQR(f)
	f.Add(v.Current)
	f.Add(v.Legacy)
	f.Add(Prefix + v.Legacy)
	f.Add(v.Current[:len(v.Current)-1] + "x")
	f.Add("a,b,c,d")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if c != (Code{}) {
				t.Fatal("non-zero Code with an error")
			}
			fields := strings.Split(strings.TrimPrefix(s, Prefix), ",")
			if len(fields) >= 4 && isB64Key(fields[3]) && strings.Contains(err.Error(), fields[3]) {
				t.Fatalf("error %q contains the ADV field", err)
			}
			return
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatalf("accepted code does not encode: %v", err)
		}
		if strings.TrimPrefix(enc, Prefix) != strings.TrimPrefix(s, Prefix) {
			t.Fatalf("re-encoded %q differs from input %q", enc, s)
		}
		again, err := Parse(enc)
		if err != nil || again != c {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func isB64Key(s string) bool {
	if len(s) != keyB64Len {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}
