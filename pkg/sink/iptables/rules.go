package iptables

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// family is 4 (iptables) or 6 (ip6tables).
type family int

var families = []family{4, 6}

func (f family) holds(p netip.Prefix) bool { return p.Addr().Is4() == (f == 4) }

// ipsetFamily is the family keyword of ipset's create command.
func (f family) ipsetFamily() string {
	if f == 4 {
		return "inet"
	}
	return "inet6"
}

// rule is one line of one of our chains, or a jump into one. Rules are
// compared by their canonical String, so the order iptables prints matches
// in, or whether it quotes a comment, never shows as drift.
type rule struct {
	chain   string
	addrOpt string // -s, -d or empty
	prefix  netip.Prefix
	proto   string
	port    uint16
	ipset   string
	setDir  string // src or dst
	mark    string // -m mark --mark, as iptables prints it
	comment string
	target  string
	// raw is set when the line holds anything we do not write.
	raw string
}

func (r rule) String() string {
	if r.raw != "" {
		return r.raw
	}
	var b strings.Builder
	b.WriteString("-A " + r.chain)
	if r.addrOpt != "" {
		fmt.Fprintf(&b, " %s %s", r.addrOpt, r.prefix)
	}
	if r.proto != "" {
		b.WriteString(" -p " + r.proto)
	}
	if r.ipset != "" {
		fmt.Fprintf(&b, " -m set --match-set %s %s", r.ipset, r.setDir)
	}
	if r.port != 0 {
		fmt.Fprintf(&b, " -m %s --dport %d", r.proto, r.port)
	}
	if r.mark != "" {
		b.WriteString(" -m mark --mark " + r.mark)
	}
	if r.comment != "" {
		b.WriteString(" -m comment --comment " + quote(r.comment))
	}
	b.WriteString(" -j " + r.target)
	return b.String()
}

// layout is everything that decides what our chains hold for a set of
// entries; the live and the file sink share it.
type layout struct {
	chainIn, chainOut string
	owner             string
	enforce           string
	jump              bool
	// selfMark is accepted before the egress drops: the tool's own
	// connections, so enforce on 443 does not lock out the next run.
	selfMark selfmark.Mark
	// threshold is the group size above which an ipset replaces one rule
	// per prefix; negative means never.
	threshold int
}

func (l layout) chain(d plan.Direction) string {
	if d == plan.Egress {
		return l.chainOut
	}
	return l.chainIn
}

func (l layout) enforces(d plan.Direction) bool {
	return l.enforce == "both" || l.enforce == d.String()
}

func (l layout) enforceComment() string { return sink.Marker(l.owner, "enforce") }
func (l layout) jumpComment() string    { return sink.Marker(l.owner, "jump") }
func (l layout) selfComment() string    { return sink.Marker(l.owner, "self") }

// selfRule accepts the tool's own marked packets, written the way
// iptables -S prints it: a full mask is left out.
func (l layout) selfRule() rule {
	m := fmt.Sprintf("0x%x/0x%x", l.selfMark.Value, l.selfMark.Mask)
	if l.selfMark.Mask == 0xffffffff {
		m = fmt.Sprintf("0x%x", l.selfMark.Value)
	}
	return rule{chain: l.chainOut, mark: m, comment: l.selfComment(), target: "ACCEPT"}
}

// hooks lists the built-in chain each of our chains is jumped to from.
func (l layout) hooks() [][2]string {
	return [][2]string{{"INPUT", l.chainIn}, {"OUTPUT", l.chainOut}}
}

// jumpRule is the one rule we own outside our chains.
func (l layout) jumpRule(hook, chain string) rule {
	return rule{chain: hook, comment: l.jumpComment(), target: chain}
}

// group is the entries of one set, direction, port and family: one rule,
// or one rule per prefix.
type group struct {
	key plan.Entry // Prefix unset
	fam family
	// parts are sorted runs of the key's entries of fam, in order: parts
	// of a plan's Keep and Add (plan.SinkPlan.Runs), or a read's entries
	// whole. The group is never made one slice.
	parts [][]plan.Entry
	n     int // entries in all parts
}

// members iterates over the group's entries in order.
func (g *group) members() *walk { return &walk{parts: g.parts} }

// walk steps through parts in turn.
type walk struct {
	parts [][]plan.Entry
	i, j  int // the next entry is parts[i][j]
}

// next returns the next entry; ok is false at the end.
func (w *walk) next() (e plan.Entry, ok bool) {
	for w.i < len(w.parts) && w.j == len(w.parts[w.i]) {
		w.i, w.j = w.i+1, 0
	}
	if w.i == len(w.parts) {
		return plan.Entry{}, false
	}
	w.j++
	return w.parts[w.i][w.j-1], true
}

// prefixes are the group's prefixes, made only when a set needs them.
func (g *group) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, g.n)
	for m := g.members(); ; {
		e, ok := m.next()
		if !ok {
			return out
		}
		out = append(out, e.Prefix)
	}
}

func groups(fam family, entries []plan.Entry) []*group {
	return sortedGroups(fam, sorted(entries))
}

// sorted returns entries in plan order. They come sorted from a read or a
// plan; a copy is sorted only when they do not (a million entries are
// 56 MB).
func sorted(entries []plan.Entry) []plan.Entry {
	if !plan.Sorted(entries) {
		entries = plan.Sort(slices.Clone(entries))
	}
	return entries
}

// compareKey is plan.Compare without the prefix: a group's entries are
// one run of it.
func compareKey(a, b plan.Entry) int {
	if a.Set != b.Set {
		return strings.Compare(a.Set, b.Set)
	}
	return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}

// runs calls f with each run of entries sharing a key, split at the
// families: plan order puts a run's IPv4 prefixes (32 bits) before its
// IPv6 ones (128). Each boundary is found by binary search, so a set of
// 100,000 members costs a few dozen comparisons, not a pass over them.
func runs(entries []plan.Entry, f func(key plan.Entry, v4, v6 []plan.Entry)) {
	for len(entries) > 0 {
		key := entries[0]
		key.Prefix = netip.Prefix{}
		end := sort.Search(len(entries), func(k int) bool { return compareKey(entries[k], key) > 0 })
		run := entries[:end]
		from := sort.Search(len(run), func(k int) bool { return run[k].Prefix.Addr().BitLen() >= 32 })
		to := sort.Search(len(run), func(k int) bool { return run[k].Prefix.Addr().BitLen() > 32 })
		f(key, run[from:to:to], run[to:])
		entries = entries[end:]
	}
}

// sortedGroups is groups of entries already sorted, as plan.Sort leaves
// them (a read's entries).
func sortedGroups(fam family, entries []plan.Entry) []*group {
	return groupsOf(fam, [][]plan.Entry{entries})
}

// groupsOf is the groups of entries that come in parts whose
// concatenation is sorted (plan.SinkPlan.Runs): a key's entries of fam
// may span parts, and its group holds each part's run of them as it is.
func groupsOf(fam family, parts [][]plan.Entry) []*group {
	var out []*group
	for _, part := range parts {
		runs(part, func(key plan.Entry, v4, v6 []plan.Entry) {
			es := v4
			if fam == 6 {
				es = v6
			}
			if len(es) == 0 {
				return
			}
			if last := len(out) - 1; last >= 0 && compareKey(out[last].key, key) == 0 {
				out[last].parts = append(out[last].parts, es)
				out[last].n += len(es)
				return
			}
			out = append(out, &group{key: key, fam: fam, parts: [][]plan.Entry{es}, n: len(es)})
		})
	}
	return out
}

// ipsetName is deterministic and at most 29 characters, leaving room for
// the temporary set's "-n" within ipset's 31. The chain's hash keeps two
// installations with different chains apart.
func ipsetName(chain string, key plan.Entry, fam family) string {
	set := key.Set
	// checkEntries allows tcp and udp only; never index an empty string.
	proto := "x"
	if s := key.Protocol.String(); s != "" {
		proto = s[:1]
	}
	build := func() string {
		return fmt.Sprintf("pd%s-%s-%s%d-%d", shortHash(chain, 6), set, proto, key.Port, fam)
	}
	if n := build(); len(n) <= 29 {
		return n
	}
	set = shortHash(key.Set, 8)
	return build()
}

func tempSetName(name string) string { return name + "-n" }

// ownSet reports whether name is an ipset of ours (its prefix hashes one
// of our chains), of which family, and whether it is a temporary twin.
func (l layout) ownSet(name string) (fam family, temp, ok bool) {
	base, temp := strings.CutSuffix(name, "-n")
	if !strings.HasPrefix(base, "pd"+shortHash(l.chainIn, 6)+"-") && !strings.HasPrefix(base, "pd"+shortHash(l.chainOut, 6)+"-") {
		return 0, false, false
	}
	switch {
	case strings.HasSuffix(base, "-4"):
		return 4, temp, true
	case strings.HasSuffix(base, "-6"):
		return 6, temp, true
	}
	return 0, false, false
}

// checkEntries refuses, before anything runs, an entry our chains cannot
// hold or read back. The plan validates its sets; the sink still must not
// panic or write a rule that would read back as foreign.
func checkEntries(entries []plan.Entry) error {
	// A set name is checked once, not once per entry: a marker round
	// trip is a regexp match.
	okSet := ""
	for _, e := range entries {
		why := ""
		switch {
		case e.Protocol != plan.TCP && e.Protocol != plan.UDP:
			why = fmt.Sprintf("protocol %q: want tcp or udp", e.Protocol)
		case e.Port == 0:
			why = "port 0"
		case e.Direction != plan.Ingress && e.Direction != plan.Egress:
			why = fmt.Sprintf("direction %q: want ingress or egress", e.Direction)
		case !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked():
			why = "prefix is not a canonical CIDR"
		case e.Prefix.Bits() == 0:
			// iptables prints no -s for a /0, so the rule would read back
			// as foreign, and hash:net refuses it.
			why = "a /0 prefix would allow every address"
		case e.Set == okSet && okSet != "":
		default:
			if _, ok := sink.ParseMarker("", sink.Marker("", e.Set)); !ok {
				why = fmt.Sprintf("set name %q cannot be a rule comment", e.Set)
			} else {
				okSet = e.Set
			}
		}
		if why != "" {
			return fmt.Errorf("entry %q: %s", e.String(), why)
		}
	}
	return nil
}

func shortHash(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

// chainRules renders the rules of our chains for one family, and the
// ipsets they match against, keyed by name.
func (l layout) chainRules(fam family, entries []plan.Entry) ([]rule, map[string][]netip.Prefix) {
	entries = sorted(entries)
	rules, gs := l.rulesOf(fam, sortedGroups(fam, entries), closers(entries))
	sets := make(map[string][]netip.Prefix, len(gs))
	for name, g := range gs {
		sets[name] = g.prefixes()
	}
	return rules, sets
}

// rulesClosing is chainRules with the ports enforce closes given apart,
// and without the sets' members (a drift check compares the rules only).
func (l layout) rulesClosing(fam family, entries []plan.Entry, closing []closer) []rule {
	rules, _ := l.rulesOf(fam, groups(fam, entries), closing)
	return rules
}

// rulesOf renders the rules of one family's groups, and returns the
// groups each ipset of them holds, keyed by name.
func (l layout) rulesOf(fam family, gs []*group, closing []closer) ([]rule, map[string]*group) {
	var rules []rule
	sets := map[string]*group{}
	for _, dir := range []plan.Direction{plan.Ingress, plan.Egress} {
		chain := l.chain(dir)
		addrOpt, setDir := "-s", "src"
		if dir == plan.Egress {
			addrOpt, setDir = "-d", "dst"
		}
		for _, g := range gs {
			if g.key.Direction != dir {
				continue
			}
			base := rule{chain: chain, proto: g.key.Protocol.String(), port: g.key.Port, comment: sink.Marker(l.owner, g.key.Set), target: "ACCEPT"}
			if l.threshold >= 0 && g.n > l.threshold {
				name := ipsetName(chain, g.key, fam)
				sets[name] = g
				r := base
				r.ipset, r.setDir = name, setDir
				rules = append(rules, r)
				continue
			}
			for m := g.members(); ; {
				e, ok := m.next()
				if !ok {
					break
				}
				r := base
				r.addrOpt, r.prefix = addrOpt, e.Prefix
				rules = append(rules, r)
			}
		}
		if l.enforces(dir) {
			drops := l.dropRules(chain, dir, closing)
			if dir == plan.Egress && len(drops) > 0 && l.selfMark.Enabled() {
				rules = append(rules, l.selfRule())
			}
			rules = append(rules, drops...)
		}
	}
	return rules, sets
}

// closer is one port that enforce closes in one direction.
type closer struct {
	dir plan.Direction
	// proto is a string: a drop read back may name any protocol.
	proto string
	port  uint16
}

func compareClosers(a, b closer) int {
	return cmp.Or(cmp.Compare(a.dir, b.dir), strings.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}

// closers are the managed ports of the sorted entries of both families,
// so a set with IPv4 addresses only still closes its port to IPv6 rather
// than leaving it open.
func closers(entries []plan.Entry) []closer {
	var out []closer
	runs(entries, func(key plan.Entry, _, _ []plan.Entry) {
		out = append(out, closer{key.Direction, key.Protocol.String(), key.Port})
	})
	slices.SortFunc(out, compareClosers)
	return slices.Compact(out)
}

// dropRules close the ports of one direction.
func (l layout) dropRules(chain string, dir plan.Direction, closing []closer) []rule {
	var out []rule
	for _, c := range closing {
		if c.dir == dir {
			out = append(out, rule{chain: chain, proto: c.proto, port: c.port, comment: l.enforceComment(), target: "DROP"})
		}
	}
	return out
}

// restore renders input for iptables-restore --noflush. Declaring a chain
// flushes it, so only our chains are replaced; jumps holds the lines that
// add or remove our jumps.
func (l layout) restore(header string, rules []rule, jumps []string) []byte {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("*filter\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n", l.chainIn, l.chainOut)
	for _, r := range rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	for _, j := range jumps {
		b.WriteString(j)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return []byte(b.String())
}

// insertJump puts the jump first in its hook, so the safelist decides
// before any existing rule; traffic it does not match returns to the next
// rule.
func (l layout) insertJump(hook, chain string) string {
	return "-I " + hook + " 1" + strings.TrimPrefix(l.jumpRule(hook, chain).String(), "-A "+hook)
}

// jumpLines repair our jumps in one hook without a rule number: a rule
// another tool inserts between our read and our write (fail2ban, Docker)
// shifts every number, and "-D INPUT 3" would then delete a foreign rule.
// Each of our jumps is deleted by its specification, which deletes the
// first rule that matches it exactly, and with jump on one is inserted at
// the top again, where the first sync put it. If the count changed
// meanwhile, a -D matches nothing and the whole transaction is rejected.
// With jump off, all of ours go: the user hooks the chains, and a second
// path in would be a surprise.
func (l layout) jumpLines(hook, chain string, have int) []string {
	want := 0
	if l.jump {
		want = 1
	}
	if have == want {
		return nil
	}
	var out []string
	for range have {
		out = append(out, "-D"+strings.TrimPrefix(l.jumpRule(hook, chain).String(), "-A"))
	}
	if want == 1 {
		out = append(out, l.insertJump(hook, chain))
	}
	return out
}

// quote writes a word in double quotes the way split reads it back.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
