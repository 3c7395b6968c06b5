package wire

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

// TestOpErrorNamesThePackageOnce: a failed receive or send says "wire:"
// once, whether the cause is foreign or one of this package's own errors.
func TestOpErrorNamesThePackageOnce(t *testing.T) {
	for _, tt := range []struct {
		cause error
		want  string
	}{
		{io.EOF, "wire: receive: EOF"},
		{ErrClosed, "wire: connection closed (receive)"},
		{ErrDecrypt, "wire: frame decryption failed (receive)"},
		{fmt.Errorf("%w: websocket: peer sent close 1000", ErrClosed), "wire: connection closed: websocket: peer sent close 1000 (receive)"},
		{fmt.Errorf("wire: write frame: %w", io.ErrShortWrite), "wire: write frame: short write (receive)"},
	} {
		err := opError("receive", tt.cause)
		if err.Error() != tt.want {
			t.Errorf("opError(receive, %q) = %q, want %q", tt.cause, err, tt.want)
		}
		if !errors.Is(err, tt.cause) {
			t.Errorf("opError(receive, %q) does not wrap its cause", tt.cause)
		}
	}
}
