package node

import "testing"

func TestErrorText(t *testing.T) {
	iq := New("iq", Attr{Key: "type", Value: "error"}).WithChildren(
		New("error", Attr{Key: "code", Value: "401"}, Attr{Key: "text", Value: "not-authorized"}))
	if got := iq.ErrorText(); got != "401 not-authorized" {
		t.Errorf("ErrorText = %q, want %q", got, "401 not-authorized")
	}
	if got := New("iq").ErrorText(); got != "no error child" {
		t.Errorf("ErrorText without <error> = %q", got)
	}
}
