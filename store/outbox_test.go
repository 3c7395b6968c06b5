package store

import "testing"

func TestOutboxIDLess(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		less bool
	}{
		{"00000000000000000009", "00000000000000000010", true},
		{"00000000000000000010", "00000000000000000009", false},
		{"999-5", "1000-0", true},
		{"1000-0", "1000-1", true},
		{"1000-1", "1000-1", false},
		{"garbage", "1-0", true},
	} {
		if got := OutboxIDLess(tt.a, tt.b); got != tt.less {
			t.Errorf("OutboxIDLess(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.less)
		}
	}
}
