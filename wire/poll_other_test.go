//go:build !linux

package wire

import "testing"

// requirePolled: only Linux reads on readiness.
func requirePolled(*testing.T, *Conn) {}

// waitArmed: only Linux reads on readiness.
func waitArmed(*testing.T, *Conn) {}
