package iptables

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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
	key      plan.Entry // Prefix unset
	prefixes []netip.Prefix
}

func groups(fam family, entries []plan.Entry) []*group {
	var out []*group
	for _, e := range plan.Sort(slices.Clone(entries)) {
		if !fam.holds(e.Prefix) {
			continue
		}
		key := e
		key.Prefix = netip.Prefix{}
		if n := len(out); n == 0 || out[n-1].key != key {
			out = append(out, &group{key: key})
		}
		g := out[len(out)-1]
		g.prefixes = append(g.prefixes, e.Prefix)
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
		default:
			if _, ok := sink.ParseMarker("", sink.Marker("", e.Set)); !ok {
				why = fmt.Sprintf("set name %q cannot be a rule comment", e.Set)
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
	return l.rulesClosing(fam, entries, closers(entries))
}

// rulesClosing is chainRules with the ports enforce closes given apart.
func (l layout) rulesClosing(fam family, entries []plan.Entry, closing []closer) ([]rule, map[string][]netip.Prefix) {
	var rules []rule
	sets := map[string][]netip.Prefix{}
	gs := groups(fam, entries)
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
			if l.threshold >= 0 && len(g.prefixes) > l.threshold {
				name := ipsetName(chain, g.key, fam)
				sets[name] = g.prefixes
				r := base
				r.ipset, r.setDir = name, setDir
				rules = append(rules, r)
				continue
			}
			for _, p := range g.prefixes {
				r := base
				r.addrOpt, r.prefix = addrOpt, p
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

// closers are the managed ports of the entries of both families, so a set
// with IPv4 addresses only still closes its port to IPv6 rather than
// leaving it open.
func closers(entries []plan.Entry) []closer {
	out := make([]closer, 0, len(entries))
	for _, e := range entries {
		out = append(out, closer{e.Direction, e.Protocol.String(), e.Port})
	}
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

// drops reads back the ports our chains close.
func (l layout) drops(rules []rule) []closer {
	var out []closer
	for _, r := range rules {
		if r.raw == "" && r.target == "DROP" && r.comment == l.enforceComment() && r.port != 0 && r.addrOpt == "" && r.ipset == "" {
			dir := plan.Ingress
			if r.chain == l.chainOut {
				dir = plan.Egress
			}
			out = append(out, closer{dir, r.proto, r.port})
		}
	}
	return out
}

// parseRule reads one "-A CHAIN ..." or "-I CHAIN [N] ..." line as
// iptables -S and iptables-save print it. Only the matches we write are
// understood, each at most once and in the form iptables prints it
// ("-p tcp -m tcp --dport 443"); a line with anything else comes back with
// raw set, so it can never pass for a rule we wrote, and an accepted
// line's String holds exactly its words.
func parseRule(line string) (rule, error) {
	toks, err := split(line)
	if err != nil {
		return rule{}, err
	}
	if len(toks) < 2 || (toks[0] != "-A" && toks[0] != "-I") {
		return rule{}, fmt.Errorf("not a rule: %q", line)
	}
	r := rule{chain: toks[1]}
	unknown := func() (rule, error) { return rule{chain: r.chain, raw: line}, nil }
	if !word(r.chain) {
		return unknown()
	}
	i := 2
	if toks[0] == "-I" && i < len(toks) {
		if _, err := strconv.Atoi(toks[i]); err == nil {
			i++
		}
	}
	// next returns the following n words, if there are that many.
	next := func(n int) ([]string, bool) {
		if i+n >= len(toks) {
			return nil, false
		}
		v := toks[i+1 : i+1+n]
		i += n
		return v, true
	}
	seen := map[string]bool{}
	for ; i < len(toks); i++ {
		opt := toks[i]
		if opt == "-m" && i+1 < len(toks) {
			i++
			opt = "-m " + toks[i]
		}
		if seen[opt] || (opt == "-s" || opt == "-d") && r.addrOpt != "" {
			return unknown()
		}
		seen[opt] = true
		v, ok := []string(nil), false
		switch opt {
		case "-s", "-d":
			if v, ok = next(1); ok {
				r.addrOpt = opt
				r.prefix, err = parsePrefix(v[0])
				ok = err == nil
			}
		case "-p":
			if v, ok = next(1); ok {
				r.proto = v[0]
				ok = word(r.proto)
			}
		case "-m tcp", "-m udp":
			// iptables prints the protocol first, then its match.
			if v, ok = next(2); ok {
				n, err := strconv.ParseUint(v[1], 10, 16)
				ok = opt == "-m "+r.proto && v[0] == "--dport" && err == nil && n > 0 && strconv.FormatUint(n, 10) == v[1]
				r.port = uint16(n)
			}
		case "-m comment":
			if v, ok = next(2); ok {
				// String leaves out an empty comment.
				r.comment = v[1]
				ok = v[0] == "--comment" && r.comment != ""
			}
		case "-m mark":
			if v, ok = next(2); ok {
				r.mark = v[1]
				ok = v[0] == "--mark" && word(r.mark)
			}
		case "-m set":
			if v, ok = next(3); ok {
				r.ipset, r.setDir = v[1], v[2]
				ok = v[0] == "--match-set" && word(r.ipset) && word(r.setDir)
			}
		case "-j":
			if v, ok = next(1); ok {
				r.target = v[0]
				ok = word(r.target)
			}
		}
		if !ok {
			return unknown()
		}
	}
	// A port without its match, or a protocol match we left out of
	// String, would print differently from what the kernel holds.
	if r.target == "" || (r.port != 0) != (seen["-m tcp"] || seen["-m udp"]) {
		return unknown()
	}
	return r, nil
}

// word is a value String can print unquoted and split reads back as one
// word; it does not start with '-', so it cannot be mistaken for an option.
func word(s string) bool {
	return s != "" && s[0] != '-' && !strings.ContainsAny(s, " \t\n\r\"\\")
}

// split breaks a line into words the way iptables-save quotes them: double
// quotes with backslash escapes.
func split(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, quoted, esc := false, false, false
	for _, c := range line {
		switch {
		case esc:
			cur.WriteRune(c)
			esc = false
		case c == '\\' && quoted:
			esc = true
		case c == '"':
			quoted = !quoted
			in = true
		case (c == ' ' || c == '\t') && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(c)
			in = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unbalanced quote in %q", line)
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// chainState is what one family holds in our chains and hooks.
type chainState struct {
	exists map[string]bool
	rules  []rule // our chains' rules, in order
	// jumps counts our own jump rule per hook. Positions are not kept: a
	// rule number is stale as soon as another tool inserts a rule.
	jumps map[string]int
}

// parseRules reads iptables -S or iptables-restore input, keeping only
// our chains and the jumps into them.
func (l layout) parseRules(text string) (chainState, error) {
	st := chainState{exists: map[string]bool{}, jumps: map[string]int{}}
	ours := func(c string) bool { return c == l.chainIn || c == l.chainOut }
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(line, "#"):
		case f[0] == "-N" && len(f) == 2 && ours(f[1]):
			st.exists[f[1]] = true
		case strings.HasPrefix(line, ":") && ours(strings.TrimPrefix(f[0], ":")):
			st.exists[strings.TrimPrefix(f[0], ":")] = true
		case (f[0] == "-A" || f[0] == "-I") && len(f) > 1:
			r, err := parseRule(line)
			if err != nil {
				return chainState{}, fmt.Errorf("line %d: %w", n+1, err)
			}
			if ours(r.chain) {
				st.rules = append(st.rules, r)
				continue
			}
			for _, h := range l.hooks() {
				if r.chain == h[0] && r.String() == l.jumpRule(h[0], h[1]).String() {
					st.jumps[h[0]]++
				}
			}
		}
	}
	return st, nil
}

// entries turns our chains' rules back into entries. members holds the
// content of every ipset a rule matches against. Rules we would not write
// are counted as odd, never turned into entries; a rule we would write
// whose comment is our marker with a set that no longer reads (edited by
// hand) is returned unlabelled, for the plan to give to a routed set.
func (l layout) entries(fam family, rules []rule, members map[string][]netip.Prefix) (owned, unlabelled []plan.Entry, odd int) {
	for _, r := range rules {
		dir, addrOpt, setDir := plan.Ingress, "-s", "src"
		if r.chain == l.chainOut {
			dir, addrOpt, setDir = plan.Egress, "-d", "dst"
		}
		if r.raw == "" && r.target == "DROP" && r.comment == l.enforceComment() {
			continue // compared as part of the whole chain in drift
		}
		if r.raw == "" && r.mark != "" && r.chain == l.chainOut && r.target == "ACCEPT" && r.comment == l.selfComment() {
			continue // likewise
		}
		set, ours := sink.ParseMarker(l.owner, r.comment)
		unread := !ours && sink.UnreadableMarker(l.owner, r.comment)
		proto, perr := plan.ParseProtocol(r.proto)
		if r.raw != "" || r.target != "ACCEPT" || !ours && !unread || r.port == 0 || perr != nil {
			odd++
			continue
		}
		out := &owned
		if unread {
			out = &unlabelled
		}
		e := plan.Entry{Set: set, Direction: dir, Protocol: proto, Port: r.port}
		switch {
		case r.ipset != "" && r.addrOpt == "" && r.setDir == setDir:
			for _, p := range members[r.ipset] {
				if fam.holds(p) {
					e.Prefix = p
					*out = append(*out, e)
				}
			}
		case r.ipset == "" && r.addrOpt == addrOpt && fam.holds(r.prefix):
			e.Prefix = r.prefix
			*out = append(*out, e)
		default:
			odd++
		}
	}
	return plan.Sort(owned), plan.Sort(unlabelled), odd
}

// drift compares what each family holds with what we would write for the
// entries read back from both families, and names the family that
// differs.
func (l layout) drift(states map[family]chainState, entries []plan.Entry, odd map[family]int) []string {
	// Enforce closes the same ports in both families. They are taken from
	// the entries and from the drops either family still holds: a flushed
	// IPv4 chain takes the only entries of an IPv4-only set with it, and
	// the IPv6 drop for that port is then still right. So the family that
	// lost rules is named, not the intact one.
	want := closers(entries)
	closing := slices.Clone(want)
	for _, fam := range families {
		closing = append(closing, l.drops(states[fam].rules)...)
	}
	slices.SortFunc(closing, compareClosers)
	closing = slices.Compact(closing)
	differs := map[family]bool{}
	for _, fam := range families {
		rules, _ := l.rulesClosing(fam, entries, closing)
		differs[fam] = odd[fam] > 0 || !sameRules(rules, states[fam].rules)
	}
	var out []string
	for _, fam := range families {
		st := states[fam]
		tag := fmt.Sprintf("IPv%d", fam)
		for _, c := range []string{l.chainIn, l.chainOut} {
			if !st.exists[c] {
				out = append(out, fmt.Sprintf("%s: chain %s is missing; create it", tag, c))
			}
		}
		switch {
		case odd[fam] > 0:
			out = append(out, fmt.Sprintf("%s: %d rules in our chains were not written by pdsafelist; remove them", tag, odd[fam]))
		case differs[fam]:
			out = append(out, fmt.Sprintf("%s: our chains differ from their entries (hand edit or changed options); rewrite them", tag))
		case !differs[4] && !differs[6]:
			// A port closed for no entry is a leftover only when both
			// families agree on it; otherwise the family that differs
			// explains it, and its rewrite reopens the port.
			for _, c := range closing {
				if !slices.Contains(want, c) {
					out = append(out, fmt.Sprintf("%s: %s drops %s port %d, which no entry uses; rewrite it", tag, l.chain(c.dir), c.proto, c.port))
				}
			}
		}
		for _, h := range l.hooks() {
			switch n := st.jumps[h[0]]; {
			case !l.jump && n > 0:
				out = append(out, fmt.Sprintf("%s: %s still has our jump to %s, and jump is off; remove it", tag, h[0], h[1]))
			case !l.jump:
			case n == 0:
				out = append(out, fmt.Sprintf("%s: %s has no jump to %s; insert it", tag, h[0], h[1]))
			case n > 1:
				out = append(out, fmt.Sprintf("%s: %s jumps to %s %d times; keep one", tag, h[0], h[1], n))
			}
		}
	}
	return out
}

func sameRules(a, b []rule) bool {
	return slices.EqualFunc(a, b, func(x, y rule) bool { return x.String() == y.String() })
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
