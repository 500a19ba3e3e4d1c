// Package netns builds throwaway network namespaces joined by a veth pair,
// so firewall tests can send real traffic through real kernel rules.
package netns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses used on the link, inside namespaces this test made: public
// space, because the tool refuses documentation ranges, and nothing here is
// routed beyond the veth pair.
var (
	Server4 = netip.MustParseAddr("193.0.2.1")
	Server6 = netip.MustParseAddr("2001:db9::1")
)

var counter atomic.Int32

// Pair is a client namespace and a server namespace on one veth link.
type Pair struct {
	Client, Server string
	// ClientAddrs are the addresses the client may send from.
	ClientAddrs []netip.Addr
}

// New creates the pair with the given client source addresses (inside
// 193.0.2.0/24 and 2001:db9::/64) and removes it when t ends.
func New(t testing.TB, clientAddrs ...netip.Addr) *Pair {
	t.Helper()
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, counter.Add(1))
	p := &Pair{Client: "pdsl-c" + id, Server: "pdsl-s" + id, ClientAddrs: clientAddrs}
	cif, sif := "pc"+id, "ps"+id
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", p.Client).Run()
		_ = exec.Command("ip", "netns", "del", p.Server).Run()
	})
	steps := [][]string{
		{"ip", "netns", "add", p.Client},
		{"ip", "netns", "add", p.Server},
		{"ip", "link", "add", cif, "type", "veth", "peer", "name", sif},
		{"ip", "link", "set", cif, "netns", p.Client},
		{"ip", "link", "set", sif, "netns", p.Server},
		{"ip", "-n", p.Server, "addr", "add", Server4.String() + "/24", "dev", sif},
		{"ip", "-n", p.Server, "addr", "add", Server6.String() + "/64", "dev", sif, "nodad"},
	}
	for _, a := range clientAddrs {
		if a.Is4() {
			steps = append(steps, []string{"ip", "-n", p.Client, "addr", "add", a.String() + "/24", "dev", cif})
		} else {
			steps = append(steps, []string{"ip", "-n", p.Client, "addr", "add", a.String() + "/64", "dev", cif, "nodad"})
		}
	}
	for _, ns := range [][2]string{{p.Client, cif}, {p.Server, sif}} {
		steps = append(steps,
			[]string{"ip", "-n", ns[0], "link", "set", "lo", "up"},
			[]string{"ip", "-n", ns[0], "link", "set", ns[1], "up"})
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return p
}

// Exec runs argv inside namespace ns.
func (p *Pair) Exec(ns string, argv ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
}

// ExecIn runs argv as a process started from a thread inside namespace
// ns, as a command typed on that host runs: no `ip netns exec` in between,
// which costs a process and a mount namespace of its own (about 4 ms of
// CPU here, more than iptables -S itself), so a benchmark that charges a
// hand command its children's CPU charges it the command's own.
func (p *Pair) ExecIn(ns string, argv ...string) ([]byte, error) {
	var out []byte
	err := in(ns, func() error {
		// The child inherits the namespace of the thread that starts it.
		var err error
		out, err = exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	return out, err
}

// Serve listens on every address of the server namespace on port and
// answers each connection with "ok". It stops when t ends.
func (p *Pair) Serve(t testing.TB, port uint16) {
	t.Helper()
	var ln net.Listener
	err := in(p.Server, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", p.Server, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
}

// Reaches reports whether a connection from src in the client namespace to
// dst:port gets the server's answer within timeout. A dropped SYN shows as
// false.
func (p *Pair) Reaches(src, dst netip.Addr, port uint16, timeout time.Duration) bool {
	var got string
	err := in(p.Client, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		got, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return err == nil && got == "ok\n"
}

// in runs fn on an OS thread switched into namespace ns. Sockets keep the
// namespace they were created in, so listeners outlive the switch back.
func in(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it when this
		// goroutine ends, so no other goroutine runs in the wrong netns.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Listen opens a TCP listener on port in namespace ns (all addresses),
// closed when t ends; serve it from any goroutine.
func (p *Pair) Listen(t testing.TB, ns string, port uint16) net.Listener {
	t.Helper()
	var ln net.Listener
	err := in(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
