package httplist

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Classify names what kind of inside address a connection reached:
// loopback, unspecified (which reaches this host), private (RFC 1918, ULA,
// the CGNAT shared space) or link-local (where cloud metadata lives), or ""
// for any other address, counted as public.
func Classify(ap netip.AddrPort) string {
	a := ap.Addr().Unmap()
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsPrivate() || sharedSpace.Contains(a):
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	}
	return ""
}

// hop is one request of a redirect chain. It rides in the request's
// context, and the next hop finds it through req.Response.Request.
type hop struct {
	url string
	// publicURL and publicAddr are the last hop so far that reached a
	// public address; once set, no later hop may reach an inside one.
	publicURL  string
	publicAddr netip.AddrPort
	reached    netip.AddrPort
}

type hopKey struct{}

// RedirectError is a redirect from a public host to an inside address.
type RedirectError struct {
	From, To     string
	FromAddr, At netip.AddrPort
	Class        string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("redirect from %s (public %s) to %s refused: it reaches %s address %s",
		e.From, e.FromAddr, e.To, e.Class, e.At)
}

// guardTransport follows where each hop of a redirect chain connected.
// After a hop reached a public address, every later hop dials afresh (a
// pooled connection was dialled for another chain), and the dialer's
// control refuses an inside address before a byte is sent.
//
// The transports, with the CA pool, are built on the first request: the
// system pool costs about 15 ms, which a run without HTTPS lists never
// pays.
type guardTransport struct {
	once          sync.Once
	build         func() (pooled, fresh *http.Transport)
	pooled, fresh *http.Transport
	classify      func(netip.AddrPort) string
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(func() { t.pooled, t.fresh = t.build() })
	h := &hop{url: req.URL.Redacted()}
	if req.Response != nil && req.Response.Request != nil {
		if prev, ok := req.Response.Request.Context().Value(hopKey{}).(*hop); ok {
			h.publicURL, h.publicAddr = prev.publicURL, prev.publicAddr
		}
	}
	ctx := context.WithValue(req.Context(), hopKey{}, h)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if ap, err := netip.ParseAddrPort(info.Conn.RemoteAddr().String()); err == nil {
			h.reached = ap
		}
	}})
	rt := t.pooled
	if h.publicURL != "" {
		rt = t.fresh
	}
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if h.reached.IsValid() && t.classify(h.reached) == "" {
		h.publicURL, h.publicAddr = h.url, h.reached
	}
	return resp, nil
}

// control refuses a connection to an inside address from a chain that
// was on a public host, then runs next (the self mark).
func (t *guardTransport) control(next func(string, string, syscall.RawConn) error) func(context.Context, string, string, syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if h, ok := ctx.Value(hopKey{}).(*hop); ok && h.publicURL != "" {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("redirect from %s to %s: unexpected address %q", h.publicURL, h.url, address)
			}
			if class := t.classify(ap); class != "" {
				return &RedirectError{From: h.publicURL, FromAddr: h.publicAddr, To: h.url, At: ap, Class: class}
			}
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// dialer is the transports' dialer, with the guard and the self mark.
func (t *guardTransport) dialer(next func(string, string, syscall.RawConn) error) *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: t.control(next)}
}
