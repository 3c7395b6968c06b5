package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// spareDescriptors is what a process needs beside its account sockets:
// the store file, listeners, the epoll descriptor, Redis connections, the
// HTTP requests fleetload itself makes.
const spareDescriptors = 500

// raiseFileLimit raises fleetload's soft RLIMIT_NOFILE to the hard limit;
// the emulator and the managers it starts inherit it (the product itself
// sets no limit). perProcess is the most sockets one of them holds: every
// account's, in the emulator. When the hard limit is below what that
// needs, it says so before anything starts.
func raiseFileLimit(perProcess int) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the descriptor limit: %w", err)
	}
	need := uint64(perProcess + spareDescriptors)
	if lim.Max < need {
		return lim.Max, fmt.Errorf("need ~%d descriptors per process (%d sockets + %d), hard limit is %d: raise the hard limit (ulimit -Hn as root, LimitNOFILE= in systemd) or run at most --accounts %d",
			need, perProcess, spareDescriptors, lim.Max, lim.Max-spareDescriptors)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Max, fmt.Errorf("raise the soft descriptor limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Max, nil
}

// checkPorts refuses n connections from one source address to one
// destination (the manager dials the emulator's one 127.0.0.1 port) when
// the ephemeral port range is smaller.
func checkPorts(n int) error {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return nil // not Linux: let the dials say it
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return nil
	}
	if ports := hi - lo + 1; n+spareDescriptors > ports {
		return fmt.Errorf("%d connections from one source address to the emulator's one address and port need as many ephemeral ports; ip_local_port_range gives %d (%d-%d): widen it or spread the connections over several source or destination addresses (not implemented)", n, ports, lo, hi)
	}
	return nil
}
