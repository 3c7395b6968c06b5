package api

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// hostPolicy decides under which Host a request may reach the API, so that
// a web page whose name an attacker points at this machine (DNS
// rebinding) is refused: loopback names and addresses, the host of the
// listen address, the configured names, and the IP address the connection
// arrived on (an address, unlike a name, cannot be rebound).
type hostPolicy struct {
	names map[string]bool // normalised by hostname
}

func newHostPolicy(listen string, allowed []string) hostPolicy {
	p := hostPolicy{names: map[string]bool{"localhost": true}}
	if host, _, err := net.SplitHostPort(listen); err == nil {
		if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
			p.names[hostname(host)] = true
		}
	}
	for _, h := range allowed {
		p.names[hostname(h)] = true
	}
	return p
}

// allows reports whether r's Host is one the API answers to.
func (p hostPolicy) allows(r *http.Request) bool {
	host := hostname(r.Host)
	if host == "" {
		return false
	}
	if p.names[host] {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	at, err := netip.ParseAddrPort(local.String())
	return err == nil && at.Addr().Unmap() == ip
}

// hostname returns the host of a Host header or a configured name: without
// port and brackets, in lower case, without a final dot.
func hostname(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// crossSite reports whether r was made by a page of another site in the
// operator's browser (forged form posts, fetches, event streams, which
// browsers send with the operator's network position). Browsers say so in
// Sec-Fetch-Site, and in Origin for every POST and CORS request; a request
// with neither (curl, scripts) is not a browser's and passes. Top-level
// navigations (a link to the dashboard) pass too: the page they open is
// ours. Another port of the same host is another site here.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default: // same-site, cross-site, or anything a browser does not send
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead
		if !safe || r.Header.Get("Sec-Fetch-Mode") != "navigate" {
			return true
		}
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host)
}
