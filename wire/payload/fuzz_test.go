package payload

import "testing"

// FuzzParseVersion checks that ParseVersion never panics and that every
// version it accepts prints back as its input and is valid.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"2.3000.1031080782", "1.0.0", "0.1.0", "02.1.1", "2.3000", "4294967296.1.1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			if v != (Version{}) {
				t.Fatalf("error with non-zero version %v", v)
			}
			return
		}
		if v.String() != s {
			t.Fatalf("ParseVersion(%q).String() = %q", s, v.String())
		}
		if v.Primary == 0 {
			t.Fatal("accepted zero primary")
		}
	})
}
