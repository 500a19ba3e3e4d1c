package netns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// HTTPStatus sends GET path from src in the client namespace to dst:port
// and returns the response's status code. The request is written by hand
// on a socket made inside the namespace: net/http dials from goroutines of
// its own, which would run in the host's namespace.
func (p *Pair) HTTPStatus(src, dst netip.Addr, port uint16, path string, timeout time.Duration) (int, error) {
	var code int
	err := in(p.Client, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: test\r\n\r\n", path); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return fmt.Errorf("bad status line %q", line)
		}
		code, err = strconv.Atoi(f[1])
		return err
	})
	return code, err
}
