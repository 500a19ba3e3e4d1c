package plan

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestEntryValidate(t *testing.T) {
	ok := entry("webhooks", Ingress, "193.0.2.10/32")
	bare := Entry{Set: "webhooks", Prefix: netip.MustParsePrefix("193.0.2.0/24")}
	tests := []struct {
		name string
		edit func(e *Entry)
		want string // empty: valid
	}{
		{"full rule", func(*Entry) {}, ""},
		{"egress udp", func(e *Entry) { e.Direction, e.Protocol, e.Port = Egress, UDP, 65535 }, ""},
		{"bare CIDR of a prefix list", func(e *Entry) { *e = bare }, ""},
		{"world", func(e *Entry) { e.Prefix = netip.MustParsePrefix("0.0.0.0/0") }, "unsafe prefix 0.0.0.0/0"},
		{"half the world", func(e *Entry) { e.Prefix = netip.MustParsePrefix("128.0.0.0/1") }, "unsafe prefix 128.0.0.0/1"},
		{"too broad", func(e *Entry) { e.Prefix = netip.MustParsePrefix("44.0.0.0/8") }, "broader than /24"},
		{"private", func(e *Entry) { e.Prefix = netip.MustParsePrefix("10.1.2.3/32") }, "Private-Use"},
		{"host bits", func(e *Entry) { e.Prefix = netip.MustParsePrefix("193.0.2.10/24") }, "host bits set"},
		{"invalid prefix", func(e *Entry) { e.Prefix = netip.Prefix{} }, "invalid prefix"},
		{"set name with nft statements", func(e *Entry) { e.Set = "x\n}\ntable inet evil {" }, "set name must match"},
		{"empty set name", func(e *Entry) { e.Set = "" }, "set name must match"},
		{"upper case set", func(e *Entry) { e.Set = "Hooks" }, "set name must match"},
		{"long set name", func(e *Entry) { e.Set = strings.Repeat("a", 32) }, "set name must match"},
		{"empty protocol", func(e *Entry) { e.Protocol = 0 }, `protocol ""`},
		{"unknown protocol", func(e *Entry) { e.Protocol = 9 }, `protocol "Protocol(9)"`},
		{"port 0", func(e *Entry) { e.Port = 0 }, "port 0"},
		{"no direction", func(e *Entry) { e.Direction = 0 }, `direction ""`},
		{"unknown direction", func(e *Entry) { e.Direction = -1 }, `direction "Direction(-1)"`},
		{"bare with a port", func(e *Entry) { *e = bare; e.Port = 443 }, `direction ""`},
	}
	for _, tt := range tests {
		e := ok
		tt.edit(&e)
		err := e.Validate(DefaultLimits)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: not one line: %q", tt.name, err)
		case err != nil && !strings.HasPrefix(err.Error(), "entry "):
			t.Errorf("%s: does not name the entry: %q", tt.name, err)
		}
	}
}

// fuzzEntries makes a sorted, duplicate-free list from b: each byte picks
// a set and a /32.
func fuzzEntries(b []byte) []Entry {
	out := make([]Entry, 0, len(b))
	for _, c := range b {
		set := []string{"a", "b"}[c>>7]
		out = append(out, Entry{Set: set, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 0, 0, c & 0x7f}), 32), Direction: Ingress, Protocol: TCP, Port: 443})
	}
	return Sort(out)
}

// Merge and without, whose galloping paths copy runs whole, agree with
// the obvious one-entry-at-a-time versions on every input.
func FuzzMergeWithout(f *testing.F) {
	f.Add([]byte{1, 2, 3, 200}, []byte{2})
	f.Add(bytes.Repeat([]byte{7}, 1), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 130, 140})
	f.Fuzz(func(t *testing.T, x, y []byte) {
		a, b := fuzzEntries(x), fuzzEntries(y)
		want := Sort(append(slices.Clone(a), b...))
		if got := Merge(a, b); !slices.Equal(got, want) {
			t.Fatalf("Merge(%v, %v) = %v, want %v", a, b, got, want)
		}
		// without(union, b) is the union less b.
		var rest []Entry
		for _, e := range want {
			if !slices.Contains(b, e) {
				rest = append(rest, e)
			}
		}
		if got := without(want, b); !slices.Equal(got, rest) {
			t.Fatalf("without(%v, %v) = %v, want %v", want, b, got, rest)
		}
	})
}

// Runs, joined, is Result, on every input: sorted or not, with entries in
// both Keep and Add or not. When Keep and Add are sorted, disjoint and Add
// is small beside Keep, every run is a part of one of them, not a copy.
func FuzzRuns(f *testing.F) {
	f.Add([]byte{1, 2, 3, 200}, []byte{2}, false)
	f.Add(bytes.Repeat([]byte{9}, 1), []byte{0}, true)
	long := make([]byte, 0, 128)
	for i := range 128 {
		long = append(long, byte(i))
	}
	f.Add(long, []byte{0}, false)
	f.Add(long, []byte{200}, false)
	f.Fuzz(func(t *testing.T, x, y []byte, shuffle bool) {
		keep, add := fuzzEntries(x), fuzzEntries(y)
		if shuffle && len(keep) > 1 {
			keep[0], keep[len(keep)-1] = keep[len(keep)-1], keep[0]
		}
		p := SinkPlan{Keep: keep, Add: add}
		want := p.Result()
		runs := p.Runs()
		if got := slices.Concat(runs...); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("Runs of Keep %v, Add %v joined = %v, want %v", keep, add, got, want)
		}
		apart := Sorted(keep) && Sorted(add) && len(add) <= len(keep)/galloping
		for _, e := range add {
			apart = apart && !slices.Contains(keep, e)
		}
		if !apart || len(keep) == 0 || len(add) == 0 {
			return
		}
		within := func(run, of []Entry) bool {
			return len(run) > 0 && len(of) > 0 &&
				uintptr(unsafe.Pointer(&run[0])) >= uintptr(unsafe.Pointer(&of[0])) &&
				uintptr(unsafe.Pointer(&run[len(run)-1])) <= uintptr(unsafe.Pointer(&of[len(of)-1]))
		}
		for _, r := range runs {
			if !within(r, keep) && !within(r, add) {
				t.Fatalf("Keep %v, Add %v: run %v is a copy", keep, add, r)
			}
		}
	})
}
