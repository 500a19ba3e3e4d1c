package nftables

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

var entrySetRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// FuzzParse: the parser never panics, refuses with one line, and what it
// accepts is consistent: valid, sorted, unique entries that render to a
// file which parses back to the same entries.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.nft"))
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	h := header("pdsafelist") + "table inet pdsafelist {\n"
	for _, body := range []string{
		"}\n",
		"set a_tcp1_in_v4 {\nelements = { 1.2.3.4, 1.2.3.0/24 }\n}\nchain ingress {\nip saddr @a_tcp1_in_v4 accept\n}\n}\n",
		"set a_tcp01_in_v4 {\nelements = { 1.2.3.4 }\n}\nset a_tcp1_in_v4 {\nelements = { 1.2.3.4/32 }\n}\nchain ingress {\nip saddr @a_tcp1_in_v4 @a_tcp01_in_v4\n}\n}\n",
		"set a_udp9_v6 {\nelements = { ::1 }\n}\nchain ingress {\n@a_udp9_v6\n}\nchain egress {\n@a_udp9_v6\n}\n}\n",
		"chain x {\ntcp dport vmap {\n22 : accept\n}\n}\n}\n",
		"set a_tcp1_out_v4 {\nelements = { 1.2.3.4 }\n}\nchain ingress {\n@a_tcp1_out_v4\n}\n}\n",
		"flags dormant\n}\n# trailing\n",
		"}\n}\n",
		// A set name edited by hand: its entries are unlabelled.
		"set Hooks_tcp443_in_v4 {\nelements = { 1.2.3.4 }\n}\nchain ingress {\nip saddr @Hooks_tcp443_in_v4 accept\n}\n}\n",
	} {
		f.Add([]byte(h + body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if !tableRE.MatchString(got.Table) {
			t.Fatalf("accepted table name %q", got.Table)
		}
		for i, e := range got.Entries {
			if !entrySetRE.MatchString(e.Set) || (e.Protocol != plan.TCP && e.Protocol != plan.UDP) || e.Port == 0 ||
				(e.Direction != plan.Ingress && e.Direction != plan.Egress) || !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() {
				t.Fatalf("invalid entry %+v", e)
			}
			if i > 0 && plan.Compare(got.Entries[i-1], e) >= 0 {
				t.Fatalf("entries not sorted and unique at %d: %v, %v", i, got.Entries[i-1], e)
			}
		}
		for _, e := range got.Unlabelled {
			if e.Set != "" || (e.Protocol != plan.TCP && e.Protocol != plan.UDP) || e.Port == 0 || !e.Prefix.IsValid() {
				t.Fatalf("invalid unlabelled entry %+v", e)
			}
		}
		s := &Sink{opts: Options{Table: got.Table, Enforce: "both"}}
		again, err := Parse(s.render(got.Entries))
		if err != nil {
			t.Fatalf("render of accepted entries does not parse: %v", err)
		}
		// What rendered is the labelled entries; the unlabelled are the
		// plan's to place.
		labelled := *got
		labelled.Unlabelled = nil
		if diff := cmp.Diff(&labelled, again, cmpPrefix, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("parse, render, parse (-first +second):\n%s", diff)
		}
	})
}

// FuzzRoundTrip: Parse(render(E)) == E for every valid entry list E.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 187, 0, 193, 0, 2, 10, 32})
	// Same set, port and family in both directions.
	f.Add([]byte{3, 'w', 'e', 'b', 0, 0, 1, 187, 0, 193, 0, 2, 10, 32, 3, 'w', 'e', 'b', 1, 0, 1, 187, 0, 193, 0, 2, 10, 32})
	// Names that look like the direction or a legacy set name.
	f.Add([]byte{7, 'x', '_', 't', 'c', 'p', '1', '_', 0, 0, 0, 1, 1, 20, 0, 0, 0, 8, 2, 'i', 'n', 3, 1, 255, 255, 2,
		0x20, 0x01, 0x0d, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 128})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries := entriesFrom(data)
		for _, enforce := range []string{"none", "both"} {
			s := &Sink{opts: Options{Table: "pdsafelist", Enforce: enforce}}
			got, err := Parse(s.render(entries))
			if err != nil {
				t.Fatalf("render of %v does not parse: %v", entries, err)
			}
			if diff := cmp.Diff(entries, got.Entries, cmpPrefix, cmpopts.EquateEmpty()); diff != "" || got.Table != "pdsafelist" {
				t.Fatalf("enforce=%s: Parse(render(E)) != E (-E +parsed), table %q:\n%s", enforce, got.Table, diff)
			}
		}
	})
}

// entriesFrom decodes a valid, sorted, duplicate-free entry list: per entry
// a set name (length byte, then characters), a flags byte (direction,
// protocol, family), a port, an address and a prefix length.
func entriesFrom(data []byte) []plan.Entry {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789_"
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	var out []plan.Entry
	for len(data) > 0 {
		n := int(next() % 12)
		name := []byte{chars[next()%26]}
		for range n {
			name = append(name, chars[next()%byte(len(chars))])
		}
		flags := next()
		e := plan.Entry{Set: string(name), Direction: plan.Ingress, Protocol: plan.TCP}
		if flags&1 != 0 {
			e.Direction = plan.Egress
		}
		if flags&2 != 0 {
			e.Protocol = plan.UDP
		}
		e.Port = uint16(next())<<8 | uint16(next())
		if e.Port == 0 {
			e.Port = 443
		}
		var addr netip.Addr
		if flags&4 != 0 {
			var a [16]byte
			for i := range a {
				a[i] = next()
			}
			addr = netip.AddrFrom16(a)
		} else {
			addr = netip.AddrFrom4([4]byte{next(), next(), next(), next()})
		}
		e.Prefix = netip.PrefixFrom(addr, int(next())%(addr.BitLen()+1)).Masked()
		out = append(out, e)
	}
	return slices.Compact(plan.Sort(out))
}
