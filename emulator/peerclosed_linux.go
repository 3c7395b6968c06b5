package emulator

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP states of a socket whose peer has sent its FIN or reset the
// connection (Linux include/net/tcp_states.h).
const (
	tcpTimeWait  = 6
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// peerClosed reports whether the peer of a TCP connection has closed it (its
// FIN or RST arrived), from the kernel's state of the socket, without
// reading from it.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	var infoErr error
	if err := raw.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); infoErr == nil {
			state = info.State
		}
	}); err != nil || infoErr != nil {
		return false
	}
	switch state {
	case tcpTimeWait, tcpClose, tcpCloseWait, tcpLastAck, tcpClosing:
		return true
	}
	return false
}
