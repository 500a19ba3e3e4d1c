package listformat

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, format, jq, body string
		want                   []string
	}{
		{"json array", "", "", `["193.0.2.1", "198.52.100.0/24"]`, []string{"193.0.2.1/32", "198.52.100.0/24"}},
		{"jq strings", "json", ".a[], .b", `{"a": ["193.0.2.1"], "b": "2001:db9::/48"}`, []string{"193.0.2.1/32", "2001:db9::/48"}},
		{"jq select", "json", `.items[] | select(.on) | .cidr`, `{"items": [{"cidr": "44.2.2.0/24", "on": true}, {"cidr": "54.1.1.1", "on": false}]}`, []string{"44.2.2.0/24"}},
		{"text with BOM", "text", "", "\ufeff193.0.2.1\n", []string{"193.0.2.1/32"}},
		{"text", "text", "", "# header\r\n193.0.2.1\r\n\n  198.52.100.0/24  # trailing\n2001:db9::1", []string{"193.0.2.1/32", "198.52.100.0/24", "2001:db9::1/128"}},
	} {
		p, err := New(tc.format, tc.jq)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := p.Parse(context.Background(), []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var want []netip.Prefix
		for _, w := range tc.want {
			want = append(want, netip.MustParsePrefix(w))
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// Every error is one line naming the offending value; an empty result is
// an error, never "allow nothing".
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ format, jq, body, want string }{
		{"json", ".a[]", `{"a": ["44.2.2.2", 443]}`, "jq result 2: want a string (IP or CIDR), got 443"},
		{"json", ".a[]", `{"a": [{"cidr": "44.2.2.2"}]}`, `jq result 1: want a string (IP or CIDR), got {"cidr":"44.2.2.2"}`},
		{"json", ".a", `{"a": ["44.2.2.2"]}`, `jq result 1: want a string (IP or CIDR), got ["44.2.2.2"]`},
		{"json", ".a[]", `{"a": ["193.0.2.1/24"]}`, `jq result 1 "193.0.2.1/24": host bits set`},
		{"json", ".a[]", `{"a": ["example.com"]}`, `jq result 1 "example.com": not an IP address or CIDR`},
		{"json", ".a[]", `{"a": []}`, "empty list"},
		{"json", ".a[] | select(.x)", `{"a": [{"x": false}]}`, "empty list"},
		{"json", ".a[]", `{"a": 1}`, `jq ".a[]": cannot iterate over: number (1)`},
		{"json", ".a[]", `{"a": [`, "invalid JSON"},
		{"json", `range(200000) | "44.2.2.2"`, `{}`, "more than 100000 results"},
		{"json", "", `{"a": 1}`, "invalid JSON: want an array of strings"},
		{"text", "", "# only a comment\n\n", "empty list"},
		{"text", "", "193.0.2.1\n44.2.2.2 extra\n", `line 2 "44.2.2.2 extra": not an IP address or CIDR`},
		{"text", "", "193.0.2.1/24\n", `line 1 "193.0.2.1/24": host bits set`},
	} {
		p, err := New(tc.format, tc.jq)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Parse(context.Background(), []byte(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || got != nil {
			t.Errorf("%s %q on %q: got %v, %v; want %q", tc.format, tc.jq, tc.body, got, err, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct{ format, jq, want string }{
		{"csv", "", `format "csv": want json or text`},
		{"text", ".a", "jq applies to format json, not text"},
		{"json", ".a[", `jq ".a[": unexpected EOF`},
		{"json", "nosuchfunc(1)", `jq "nosuchfunc(1)": function not defined: nosuchfunc/1`},
	} {
		if _, err := New(tc.format, tc.jq); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: got %v, want %q", tc.format, tc.jq, err, tc.want)
		}
	}
}

// A jq expression that never ends stops with the run's deadline.
func TestJQHonoursContext(t *testing.T) {
	p, err := New("json", "repeat(.) | empty")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Parse(ctx, []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("got %v", err)
	}
}

// A published list of a million addresses must not cost an allocation an
// entry: the reader fills one slice of addresses, and a plain IPv4 address
// is read from the bytes without a string.
func TestJSONArrayAllocations(t *testing.T) {
	const n = 10_000
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}).String())
	}
	b.WriteString("]")
	data := []byte(b.String())
	p, err := New("json", "")
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(3, func() {
		if out, err := p.Addresses(context.Background(), data); err != nil || len(out) != n {
			t.Fatalf("%d addresses, %v", len(out), err)
		}
	})
	if allocs > 2 {
		t.Errorf("%.0f allocations for %d entries, want the result's slice only", allocs, n)
	}
}

// The byte reader of plain IPv4 addresses answers exactly as
// plan.ParsePrefix does whenever it answers at all.
func FuzzIPv4(f *testing.F) {
	for _, s := range []string{"44.2.2.2", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
		"1..2.3", "1.2.3.4/32", " 1.2.3.4", "1.2.3.4 ", "1.2.3.-4", "1.2.3.0004", "10.0.0.1", "999.9.9.9", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseIPv4(b)
		if !ok {
			return // plan.ParsePrefix alone reads it
		}
		want, err := plan.ParsePrefix(string(b))
		if err != nil || want != got {
			t.Errorf("parseIPv4(%q) = %v; plan.ParsePrefix: %v, %v", b, got, want, err)
		}
	})
}

// The one-pass reader and encoding/json agree on every input: the same
// prefixes, or the same error.
func FuzzJSONArray(f *testing.F) {
	for _, s := range []string{
		`["193.0.2.1", "198.52.100.0/24"]`, ` [ "2001:db9::1" ] `, `["193.0.2.1",]`, `["193.0.2.1" "44.2.2.2"]`,
		`[]`, `[1]`, `["\u0031\u0039\u0033.0.2.1"]`, `["193.0.2.1/24"]`, `["193.0.2.1"]x`, `["193.0.2.1"`,
		"\ufeff[\"193.0.2.1\"]", `[" 203.1.113.5 "]`, `["::ffff:44.242.69.192"]`, `["44.2.2.2", null]`, `{"a": 1}`, `["é"]`, "[\"44.2.2.2\t\"]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := plainArray(data)
		slow, err := jsonArray(data)
		if !ok {
			return // jsonArray alone reads it
		}
		if err != nil {
			t.Fatalf("one-pass reader accepted %q, encoding/json: %v", data, err)
		}
		if diff := cmp.Diff(slow, fast, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Errorf("%q (-encoding/json +one-pass):\n%s", data, diff)
		}
	})
}

// The text reader keeps every entry as plan.ParsePrefix reads it: what it
// returns prints and parses back to itself, and an IPv4-mapped entry is
// never unmapped into the IPv4 address it embeds.
func FuzzText(f *testing.F) {
	for _, s := range []string{"193.0.2.1\n198.52.100.0/24\n", "# c\n\n 2001:db9::1 # x\r\n", "::ffff:44.242.69.192\n",
		"::ffff:0:0/96", "\ufeff193.0.2.1", "193.0.2.1/24", "fe80::1%eth0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := New("text", "")
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Parse(context.Background(), data)
		if err != nil {
			return
		}
		for _, got := range out {
			back, err := plan.ParsePrefix(got.String())
			if err != nil || back != got {
				t.Errorf("%q: %s parses back as %v, %v", data, got, back, err)
			}
		}
		if len(out) == 1 && bytes.Contains(data, []byte("::ffff:")) && bytes.Count(data, []byte("\n")) == 0 && out[0].Addr().Is4() {
			t.Errorf("%q: IPv4-mapped entry unmapped to %s", data, out[0])
		}
	})
}

// Issue 24: a text list of a million lines took 210 MB where the same
// addresses as JSON took 126: the body was copied into a string and split
// into a second slice of its lines, and the result grew by doubling. Now
// it is read in place into one slice, like JSON.
func TestTextAllocations(t *testing.T) {
	const n = 10_000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s\n", netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	data := []byte(b.String())
	p, err := New("text", "")
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(3, func() {
		if out, err := p.Addresses(context.Background(), data); err != nil || len(out) != n {
			t.Fatalf("%d addresses, %v", len(out), err)
		}
	})
	if allocs > 2 {
		t.Errorf("%.0f allocations for %d lines, want the result's slice only", allocs, n)
	}
}

// textBySplit is the text reader as it was, splitting a copy of the body:
// the reference the in-place reader must agree with.
func textBySplit(data []byte) ([]source.Address, error) {
	var out []source.Address
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for i, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(out) >= MaxEntries {
			return nil, fmt.Errorf("more than %d entries", MaxEntries)
		}
		p, err := plan.ParsePrefix(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %v", i+1, clip(line), err)
		}
		out = append(out, source.Address{Prefix: p})
	}
	return out, nil
}

// The in-place text reader and the split reader agree on every input:
// the same prefixes, or the same error.
func FuzzTextInPlace(f *testing.F) {
	for _, s := range []string{"193.0.2.1\n198.52.100.0/24\n", "# c\n\n 2001:db9::1 # x\r\n", "\ufeff193.0.2.1", "193.0.2.1/24",
		"1.2.3.4\u00a0\n", "\u20281.2.3.4", "01.2.3.4\n", "1.2.3.4\n#\n\n5.6.7.8", "\xff1.2.3.4", " \t1.2.3.4\t\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gerr := parseText(data)
		want, werr := textBySplit(data)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%q: error %v, split reader %v", data, gerr, werr)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%q (-split +in place):\n%s", data, diff)
		}
	})
}
