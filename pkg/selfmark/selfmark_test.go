package selfmark

import (
	"net"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mark
		err  bool
	}{
		{"0", Mark{}, false},
		{"0x64/0xff", Mark{0x64, 0xff}, false},
		{"0x70640000/0xffff0000", Mark{0x70640000, 0xffff0000}, false},
		{"100", Mark{100, 0xffffffff}, false},
		{"0x100/0xff", Mark{}, true},
		{"0x1/0", Mark{}, true},
		{"x", Mark{}, true},
		{"0x1ffffffff", Mark{}, true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if got, _ := Parse(Default.String()); got != Default {
		t.Errorf("Default does not round-trip: %v", got)
	}
}

// The mark must be on the socket itself, where netfilter reads it.
func TestControlSetsMark(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, enable := range []bool{false, true} {
		k := New(Mark{Value: 0x64, Mask: 0xff})
		var warned []error
		k.Warn = func(err error) { warned = append(warned, err) }
		if enable {
			k.Enable()
		}
		d := net.Dialer{Control: k.Control}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := c.(*net.TCPConn).SyscallConn()
		var got int
		var gerr error
		raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK) })
		c.Close()
		if gerr != nil {
			t.Fatal(gerr)
		}
		want := 0
		if enable && len(warned) == 0 {
			want = 0x64
		}
		if got != want {
			t.Errorf("enabled=%v: SO_MARK = %#x, want %#x (warnings %v)", enable, got, want, warned)
		}
	}
}

func TestDisabledMarkNeverEnables(t *testing.T) {
	k := New(Mark{})
	k.Enable()
	if k.Active() {
		t.Fatal("a zero mark became active")
	}
	var nilk *Marker
	if nilk.Active() || nilk.Mark().Enabled() {
		t.Fatal("nil marker is active")
	}
}
