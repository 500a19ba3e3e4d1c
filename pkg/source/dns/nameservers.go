package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	mdns "github.com/miekg/dns"
)

// NameserversFromResolvConf reads the system's nameservers.
func NameserversFromResolvConf(path string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []string
	for _, s := range cc.Servers {
		ns, err := NormalizeNameserver(net.JoinHostPort(s, cc.Port))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, ns)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no nameserver lines", path)
	}
	return out, nil
}

// NormalizeNameserver turns HOST[:PORT] into host:port, port 53 by default.
// A bare IPv6 address needs no brackets.
func NormalizeNameserver(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty nameserver")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, "53"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("nameserver %q: bad port %q", s, port)
	}
	if host == "" {
		return "", fmt.Errorf("nameserver %q: no host", s)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return "", fmt.Errorf("nameserver %q: not an IP address or hostname", s)
	}
	return net.JoinHostPort(host, port), nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	_, ok := mdns.IsDomainName(h)
	for _, c := range h {
		if !(c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return ok
}
