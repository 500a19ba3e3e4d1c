// Package selfmark marks the tool's own sockets (DNS, lists, notifications,
// AWS) with SO_MARK, so an egress enforce chain we render can accept them
// before its drop: without it the first apply blocks the next run's
// fetches on the managed port.
package selfmark

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Mark is a firewall mark matched as mark & Mask == Value.
type Mark struct {
	Value uint32
	Mask  uint32
}

// Default sits in the low byte, which kube-proxy (0x4000, 0x8000), Calico
// (0xffff0000), Cilium (0x0f00, 0xf000, identity in the high 16 bits) and
// Tailscale (0xff0000) never rewrite, and differs there from the socket
// marks of WireGuard (0xca6c), Istio (0x539) and the AWS VPC CNI (0x80).
var Default = Mark{Value: 0x64, Mask: 0xff}

// Enabled is false for the zero mark ("0" in the config).
func (m Mark) Enabled() bool { return m.Value != 0 }

// String is VALUE/MASK in hex, the way nft and iptables take it.
func (m Mark) String() string {
	if !m.Enabled() {
		return "0"
	}
	return fmt.Sprintf("0x%x/0x%x", m.Value, m.Mask)
}

// Parse reads VALUE[/MASK] (hex with 0x or decimal); "0" disables. The
// mask defaults to all bits, and the value must lie inside it.
func Parse(s string) (Mark, error) {
	s = strings.TrimSpace(s)
	v, m, hasMask := strings.Cut(s, "/")
	val, err := strconv.ParseUint(strings.TrimSpace(v), 0, 32)
	if err != nil {
		return Mark{}, fmt.Errorf("self_mark %q: want VALUE[/MASK] such as %s, or 0 to disable", s, Default)
	}
	mask := uint64(0xffffffff)
	if hasMask {
		if mask, err = strconv.ParseUint(strings.TrimSpace(m), 0, 32); err != nil || mask == 0 {
			return Mark{}, fmt.Errorf("self_mark %q: want VALUE[/MASK] such as %s, or 0 to disable", s, Default)
		}
	}
	if val == 0 {
		return Mark{}, nil
	}
	if val&^mask != 0 {
		return Mark{}, fmt.Errorf("self_mark %q: value has bits outside the mask", s)
	}
	return Mark{Value: uint32(val), Mask: uint32(mask)}, nil
}

// Marker sets the mark on sockets once enabled. Clients take its Control
// when they are built; whether to mark is read at each dial, so a sink
// opened later can still turn it on.
type Marker struct {
	mark Mark
	on   atomic.Bool
	// Warn reports, once, that the mark could not be set.
	Warn func(error)
	once sync.Once
}

// New returns a marker for m, off until Enable.
func New(m Mark) *Marker { return &Marker{mark: m} }

// Mark is the configured mark (nil marker: none).
func (k *Marker) Mark() Mark {
	if k == nil {
		return Mark{}
	}
	return k.mark
}

// Enable starts marking sockets dialled from now on.
func (k *Marker) Enable() {
	if k != nil && k.mark.Enabled() {
		k.on.Store(true)
	}
}

// Active reports whether sockets are being marked.
func (k *Marker) Active() bool { return k != nil && k.on.Load() }

// Control is a net.Dialer Control func. Failing to set the mark (no
// CAP_NET_ADMIN) is warned about once and the dial goes on: an unmarked
// socket may still get through, a refused dial never does.
func (k *Marker) Control(network, address string, c syscall.RawConn) error {
	if !k.Active() {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = setMark(int(fd), int(k.mark.Value)) }); err != nil {
		serr = err
	}
	if serr != nil {
		k.once.Do(func() {
			if k.Warn != nil {
				k.Warn(fmt.Errorf("self mark %s: cannot set SO_MARK (%v); the tool's own connections are unmarked and an egress enforce chain may drop them", k.mark, serr))
			}
		})
	}
	return nil
}

var errUnsupported = errors.New("SO_MARK is not supported on this system")

// Transport is http.DefaultTransport dialling with Control.
func (k *Marker) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: k.Control}).DialContext
	return tr
}
