package emulator

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpEstablished is the state of an open TCP connection (Linux
// include/net/tcp_states.h); any later state means one side has closed it
// or is closing it.
const tcpEstablished = 1

// peerClosed reports whether a TCP connection is no longer open, from the
// kernel's state of the socket, without reading from it: the peer's FIN or
// RST arrived, or this side has closed it or closed its socket (after
// ending the stream, say) while its reader has not yet returned.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return errors.Is(err, net.ErrClosed)
	}
	var state uint8
	var infoErr error
	if err := raw.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); infoErr == nil {
			state = info.State
		}
	}); err != nil {
		return errors.Is(err, net.ErrClosed) // this side closed it
	}
	if infoErr != nil {
		return false
	}
	return state != tcpEstablished
}
