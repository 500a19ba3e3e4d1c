package iptables

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
)

// FuzzParseRules: the parser never panics, and what it accepts is
// consistent. A rule read as ours prints back (String) as the same words
// it was read from, up to prefix spelling and an -I position, and reads
// back as the same rule; anything else is kept verbatim as raw.
func FuzzParseRules(f *testing.F) {
	for _, seed := range []string{
		`-A PDSAFELIST-IN -s 193.0.2.10/32 -p tcp -m tcp --dport 443 -m comment --comment "pdsafelist:webhooks" -j ACCEPT`,
		`-A PDSAFELIST-OUT -p udp -m set --match-set pdabc-api-u53-6 dst -m udp --dport 53 -m comment --comment pdsafelist:api -j ACCEPT`,
		`-I INPUT 1 -m comment --comment "pdsafelist:jump" -j PDSAFELIST-IN`,
		`-A PDSAFELIST-IN -p tcp -m tcp --dport 8443 -m comment --comment "pdsafelist:prod:enforce" -j DROP`,
		`-A PDSAFELIST-IN -i eth0 -j ACCEPT`,
		`-A PDSAFELIST-IN -s 193.0.2.10/32 -m comment --comment "a \"quoted\" note" -j DROP`,
		`-A X -m tcp --dport 22 -j ACCEPT`,
		`-A X -p tcp --dport 0443 -m comment -j ACCEPT`,
		`-A X -s 193.0.2.10 -d 2001:db9::1/64 -j ACCEPT`,
		"*filter\n:PDSAFELIST-IN - [0:0]\n-N PDSAFELIST-OUT\n-A INPUT -m comment --comment \"pdsafelist:jump\" -j PDSAFELIST-IN\nCOMMIT\n",
		`-A X --comment "open`,
		`-A PDSAFELIST-OUT -m mark --mark 0x64/0xff -m comment --comment "pdsafelist:self" -j ACCEPT`,
		`-A PDSAFELIST-OUT -m mark --mark 0x64 -m comment --comment pdsafelist:prod:self -j ACCEPT`,
		`-A PDSAFELIST-OUT -m mark ! --mark 0x64 -j ACCEPT`,
	} {
		f.Add(seed)
	}
	l := layout{chainIn: DefaultChainIn, chainOut: DefaultChainOut, enforce: "both", jump: true, threshold: -1}
	f.Fuzz(func(t *testing.T, text string) {
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			r, err := parseRule(line)
			if err != nil {
				continue
			}
			if r.raw != "" {
				if r.raw != line {
					t.Fatalf("raw %q, read from %q", r.raw, line)
				}
				continue
			}
			printed := r.String()
			if got, want := words(t, printed), words(t, line); !slices.Equal(got, want) {
				t.Fatalf("%q read as %q:\nwords %q\nwant  %q", line, printed, got, want)
			}
			again, err := parseRule(printed)
			if err != nil {
				t.Fatalf("%q printed as %q, which does not parse: %v", line, printed, err)
			}
			if diff := cmp.Diff(r, again, cmp.AllowUnexported(rule{}), cmpPrefix); diff != "" {
				t.Fatalf("%q -> %q reads back differently (-first +second):\n%s", line, printed, diff)
			}
		}
		st, err := l.parseRules(text)
		if err != nil {
			return
		}
		for _, fam := range families {
			entries, _, _ := l.entries(fam, st.rules, nil)
			if err := checkEntries(entries); err != nil {
				t.Fatalf("read back an entry the sink would refuse: %v", err)
			}
		}
		_ = l.drift(map[family]chainState{4: st, 6: st}, nil, nil)
	})
}

// words splits a rule line into its words, sorted, with "-I CHAIN N" as
// "-A CHAIN" and prefixes spelled canonically: two lines with the same
// words hold the same matches.
func words(t *testing.T, line string) []string {
	toks, err := split(line)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if len(toks) > 2 && toks[0] == "-I" {
		if _, err := strconv.Atoi(toks[2]); err == nil {
			toks = slices.Delete(toks, 2, 3)
		}
	}
	if len(toks) > 0 {
		toks[0] = "-A"
	}
	for i := 1; i < len(toks); i++ {
		if toks[i-1] == "-s" || toks[i-1] == "-d" {
			if p, err := parsePrefix(toks[i]); err == nil {
				toks[i] = p.String()
			}
		}
	}
	slices.Sort(toks)
	return toks
}

var fuzzSets = []string{"webhooks", "api", "a", "x_1", strings.Repeat("z", 31)}

// fuzzEntries turns bytes into a valid entry list: 3 bytes of settings,
// then 9 bytes per entry (set, flags, port, 5 address bytes); flags pick
// direction, protocol and family, and the address bytes fill the prefix
// from the top, so entries share prefixes and groups often.
func fuzzEntries(data []byte) (layout, []plan.Entry) {
	l := layout{chainIn: DefaultChainIn, chainOut: DefaultChainOut, enforce: "none", threshold: -1}
	if len(data) < 3 {
		return l, nil
	}
	l.enforce = []string{"none", "ingress", "egress", "both"}[data[0]%4]
	l.jump = data[0]&4 != 0
	if data[0]&8 != 0 {
		l.owner = "prod"
	}
	l.threshold = []int{-1, 0, 1, 2, 200}[int(data[1])%5]
	if data[2]&1 != 0 {
		l.chainIn, l.chainOut = "A-IN", "A_OUT"
	}
	switch data[2] & 6 {
	case 2:
		l.selfMark = selfmark.Default
	case 4:
		l.selfMark = selfmark.Mark{Value: 0x70640000, Mask: 0xffff0000}
	case 6:
		l.selfMark = selfmark.Mark{Value: 0x64, Mask: 0xffffffff}
	}
	var out []plan.Entry
	for rest := data[3:]; len(rest) >= 9; rest = rest[9:] {
		flags := rest[1]
		e := plan.Entry{Set: fuzzSets[int(rest[0])%len(fuzzSets)], Direction: plan.Ingress, Protocol: plan.TCP}
		if flags&1 != 0 {
			e.Direction = plan.Egress
		}
		if flags&2 != 0 {
			e.Protocol = plan.UDP
		}
		e.Port = uint16(rest[2])<<8 | uint16(rest[3])
		if e.Port == 0 {
			e.Port = 1
		}
		var a netip.Addr
		var b [16]byte
		copy(b[:], rest[4:8])
		if flags&4 != 0 {
			b[0], b[1] = 0x20, 0x01
			copy(b[2:], rest[4:8])
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte(b[:4]))
		}
		bits := 1 + int(rest[8])%a.BitLen()
		e.Prefix = netip.PrefixFrom(a, bits).Masked()
		out = append(out, e)
	}
	return l, plan.Sort(out)
}

// FuzzRoundTrip: the rules the sinks render for a valid entry list read
// back as the same entries, with no drift, through the live sink's parser
// (with the ipsets it would fill) and through the file sink.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{2, 0, 2, 0, 1, 1, 187, 54, 0, 0, 7, 32, 1, 1, 0, 53, 44, 1, 2, 3, 24})
	f.Add([]byte{11, 3, 6, 1, 1, 1, 187, 54, 0, 0, 7, 32, 0, 5, 0, 53, 44, 1, 2, 3, 100})
	f.Add([]byte{7, 2, 0, 0, 0, 1, 187, 193, 0, 2, 10, 31, 1, 3, 0, 53, 193, 0, 2, 11, 31, 1, 4, 0, 53, 1, 2, 3, 4, 127})
	f.Add([]byte{13, 1, 1, 4, 1, 32, 251, 44, 1, 2, 3, 23, 4, 1, 32, 251, 44, 1, 3, 0, 23, 4, 5, 32, 251, 54, 9, 9, 9, 200})
	f.Add([]byte{3, 3, 0, 2, 0, 0, 80, 54, 0, 0, 0, 7, 2, 2, 0, 80, 54, 0, 0, 0, 8, 2, 6, 0, 80, 32, 1, 13, 185, 60})
	f.Fuzz(func(t *testing.T, data []byte) {
		l, entries := fuzzEntries(data)
		if err := checkEntries(entries); err != nil {
			t.Fatalf("generated entries are invalid: %v", err)
		}
		states := map[family]chainState{}
		odd := map[family]int{}
		var got []plan.Entry
		for _, fam := range families {
			rules, sets := l.chainRules(fam, entries)
			var jumps []string
			for _, h := range l.hooks() {
				jumps = append(jumps, l.jumpLines(h[0], h[1], 0)...)
			}
			text := string(l.restore("", rules, jumps))
			st, err := l.parseRules(text)
			if err != nil {
				t.Fatalf("IPv%d: rendered rules do not parse: %v\n%s", fam, err, text)
			}
			var back []plan.Entry
			members := map[string]setMembers{}
			for n, ps := range sets {
				members[n] = setMembers{prefixes: ps}
			}
			back, _, odd[fam] = l.entries(fam, st.rules, members)
			if odd[fam] != 0 {
				t.Fatalf("IPv%d: %d rendered rules read back as foreign:\n%s", fam, odd[fam], text)
			}
			for name := range sets {
				if len(tempSetName(name)) > 31 {
					t.Fatalf("ipset %q: its temporary twin is longer than 31", name)
				}
				if f, temp, ok := l.ownSet(name); !ok || temp || f != fam {
					t.Fatalf("ipset %q not recognised as ours for IPv%d", name, fam)
				}
			}
			got = append(got, back...)
			states[fam] = st
		}
		if diff := cmp.Diff(entries, plan.Sort(got), cmpPrefix); diff != "" {
			t.Fatalf("entries read back (-rendered +read):\n%s", diff)
		}
		if drift := l.drift(states, entries, odd); len(drift) != 0 {
			t.Fatalf("drift right after rendering: %q", drift)
		}

		// The file sink: same chains, no ipsets.
		o := FileOptions{Chains: Chains{ChainIn: l.chainIn, ChainOut: l.chainOut, Enforce: l.enforce, Jump: l.jump}, Path: "/nonexistent/r.v4", Check: "never"} // never read or written here
		fs, err := NewFile(o, l.owner, "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for _, fam := range families {
			data := fs.render(fam, entries)
			back, unlabelled, _, err := fs.parse(fam, data)
			if err != nil {
				t.Fatalf("IPv%d file does not parse: %v", fam, err)
			}
			if len(unlabelled) > 0 {
				t.Fatalf("IPv%d: rendered entries read back unlabelled: %v", fam, unlabelled)
			}
			got = append(got, back...)
		}
		if diff := cmp.Diff(entries, plan.Sort(got), cmpPrefix); diff != "" {
			t.Fatalf("file entries read back (-rendered +read):\n%s", diff)
		}
		for _, fam := range families {
			if string(fs.render(fam, plan.Sort(got))) != string(fs.render(fam, entries)) {
				t.Fatalf("IPv%d file renders differently from its own read-back", fam)
			}
		}
	})
}

// FuzzSortPrefixes holds the radix sort of ipset members to the order
// plan.ComparePrefix gives.
func FuzzSortPrefixes(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1, 32, 10, 0, 0, 0, 24, 192, 0, 2, 0, 24}, uint16(300))
	f.Fuzz(func(t *testing.T, seed []byte, n uint16) {
		if len(seed) < 5 {
			return
		}
		ps := make([]netip.Prefix, int(n)%2000)
		for i := range ps {
			var a [4]byte
			for j := range a {
				a[j] = seed[(i*7+j)%len(seed)] ^ byte(i>>(8*j))
			}
			ps[i] = netip.PrefixFrom(netip.AddrFrom4(a), int(seed[(i*3+4)%len(seed)])%33).Masked()
		}
		want := slices.Compact(slices.SortedFunc(slices.Values(ps), plan.ComparePrefix))
		ps = sortPrefixes(ps)
		if !slices.Equal(ps, want) {
			t.Fatalf("radix order differs from ComparePrefix:\n got %v\nwant %v", ps, want)
		}
	})
}

// FuzzGroupsOf holds the grouping by binary search, of one sorted run,
// of a plan's runs or of the union cut anywhere into parts, to the
// obvious pass over the union: the same groups, in order, with the same
// members per family.
func FuzzGroupsOf(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 130, 131, 64, 200}, []byte{1, 0, 1, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, spec, split []byte) {
		var keep, add []plan.Entry
		for i, c := range spec {
			e := plan.Entry{Set: []string{"a", "b"}[c>>7], Direction: plan.Ingress, Protocol: plan.TCP, Port: 443 + uint16(c>>6&1)}
			if c&0x20 != 0 {
				e.Prefix = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 15: c & 0x1f}), 128)
			} else {
				e.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 0, 0, c & 0x1f}), 32)
			}
			if i < len(split) && split[i]&1 == 1 {
				add = append(add, e)
			} else {
				keep = append(keep, e)
			}
		}
		keep, add = plan.Sort(keep), plan.Sort(add)
		var dup []plan.Entry
		for _, e := range add {
			if slices.Contains(keep, e) {
				dup = append(dup, e)
			}
		}
		keep = slices.DeleteFunc(keep, func(e plan.Entry) bool { return slices.Contains(dup, e) })
		union := plan.Merge(keep, add)
		for _, fam := range families {
			// The reference: one pass, a group per run of equal keys.
			type ref struct {
				key plan.Entry
				ps  []netip.Prefix
			}
			var want []ref
			for _, e := range union {
				k := e
				k.Prefix = netip.Prefix{}
				if !fam.holds(e.Prefix) {
					continue
				}
				if len(want) == 0 || want[len(want)-1].key != k {
					want = append(want, ref{key: k})
				}
				want[len(want)-1].ps = append(want[len(want)-1].ps, e.Prefix)
			}
			// The union cut into parts wherever split says, as any
			// plan's runs may cut it.
			var parts [][]plan.Entry
			from := 0
			for i := range union {
				if i < len(split) && split[i]&2 != 0 {
					parts = append(parts, union[from:i])
					from = i
				}
			}
			parts = append(parts, union[from:])
			apart := plan.SinkPlan{Keep: keep, Add: add}.Runs()
			for _, got := range [][]*group{sortedGroups(fam, union), groupsOf(fam, apart), groupsOf(fam, parts)} {
				if len(got) != len(want) {
					t.Fatalf("IPv%d: %d groups, want %d", fam, len(got), len(want))
				}
				for i, g := range got {
					if g.key != want[i].key || g.n != len(want[i].ps) || !slices.Equal(g.prefixes(), want[i].ps) {
						t.Fatalf("IPv%d group %d: %v n=%d %v, want %v %v", fam, i, g.key, g.n, g.prefixes(), want[i].key, want[i].ps)
					}
				}
			}
		}
	})
}
