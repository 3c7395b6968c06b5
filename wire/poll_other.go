//go:build !linux

package wire

import "net"

// Readiness-driven reading is Linux's (poll_linux.go): elsewhere every
// transport is read by a goroutine of its own (Transport.Watch).

type pollConn struct{ net.Conn }

type watch struct{}

func newPollConn(net.Conn) *pollConn { return nil }

func pollWatch(*Transport, *Conn, func([]byte), func(error)) bool { return false }

func (c *Conn) wakeWatch() {}
