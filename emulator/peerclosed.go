package emulator

import (
	"net"

	"github.com/wafleet/wafleet/wire"
)

// clientClosed reports whether conn is closed already — by the client, or
// by the server after ending the stream — even if the session's reader has
// not run since (on a loaded machine it may not have, while the client's
// next connection logs in). Such a connection is not counted as open when
// the device logs in again: it was let go of first, which is all the
// one-connection rule asks. When the transport cannot tell, the answer is
// false (counted as open), the strict side.
func clientClosed(conn wire.FrameConn) bool {
	switch c := conn.(type) {
	case interface{ ClientClosed() bool }:
		return c.ClientClosed()
	case interface{ NetConn() net.Conn }:
		return peerClosed(c.NetConn())
	}
	return false
}
