package nftables

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// File is a parsed pdsafelist nftables file.
type File struct {
	Table   string
	Entries []plan.Entry
}

// block is one "set NAME {" or "chain NAME {" (or any other block) inside
// a table, as written in our file or as listed by nft.
type block struct {
	head  string   // the opening line, e.g. "set api_tcp443_out_v4 {"
	lines []string // trimmed lines inside, elements left out
	elems []string // element tokens, as written
	line  int      // line number of the head
}

// table is the body of one "table inet T { ... }".
type table struct {
	attrs  []string // lines directly in the table, outside blocks
	blocks []*block
}

var (
	// Current names carry the direction after the port; legacy names
	// (before direction was part of the name) take it from the chain.
	setNameRE       = regexp.MustCompile(`^([a-z][a-z0-9_]*)_(tcp|udp)([0-9]{1,5})_(in|out)_v(4|6)$`)
	legacySetNameRE = regexp.MustCompile(`^([a-z][a-z0-9_]*)_(tcp|udp)([0-9]{1,5})_v(4|6)$`)
	ruleSetRE       = regexp.MustCompile(`@([a-z0-9_]+)\b`)
)

// Parse reads a file this sink wrote. It refuses anything else with one line
// that says why, because a file we did not write is not ours to replace.
func Parse(data []byte) (*File, error) {
	f, _, err := parse(data)
	return f, err
}

func parse(data []byte) (*File, *table, error) {
	m := headerRE.FindSubmatch(data)
	if m == nil {
		return nil, nil, fmt.Errorf("not written by pdsafelist (its first lines are not the %q header); refusing to overwrite", marker)
	}
	f := &File{Table: string(m[1])}
	lines := splitLines(data[len(m[0]):])
	const skipped = 3 // header lines
	var body *table
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case l == "" || l[0] == '#':
		case body == nil && (l == "table inet "+f.Table+" {}" || l == "delete table inet "+f.Table):
		case body == nil && l == "table inet "+f.Table+" {":
			t, next, err := readTable(lines, i+1, skipped)
			if err != nil {
				return nil, nil, err
			}
			body, i = t, next-1
		default:
			// Anything outside our table is someone else's: rewriting the
			// file would lose it.
			return nil, nil, fmt.Errorf("line %d: %q is outside table inet %s; refusing to overwrite a file holding more than pdsafelist's table", i+1+skipped, clip(l), f.Table)
		}
	}
	if body == nil {
		return nil, nil, fmt.Errorf("no table inet %s definition", f.Table)
	}
	entries, err := body.entries()
	if err != nil {
		return nil, nil, err
	}
	f.Entries = entries
	return f, body, nil
}

// entries turns the table's sets and the chains that use them into entries:
// a set no rule of its direction uses allows nothing and is left out, so the
// next apply drops it.
func (t *table) entries() ([]plan.Entry, error) {
	refs := map[string][]plan.Direction{}
	for _, b := range t.blocks {
		kind, name := b.kind()
		if kind != "chain" || (name != string(plan.Ingress) && name != string(plan.Egress)) {
			continue
		}
		for _, l := range b.lines {
			for _, m := range ruleSetRE.FindAllStringSubmatch(l, -1) {
				if !slices.Contains(refs[m[1]], plan.Direction(name)) {
					refs[m[1]] = append(refs[m[1]], plan.Direction(name))
				}
			}
		}
	}
	n := 0
	for _, b := range t.blocks {
		n += len(b.elems)
	}
	out := make([]plan.Entry, 0, n)
	for _, b := range t.blocks {
		kind, name := b.kind()
		if kind != "set" {
			continue
		}
		var set, proto, port, fam string
		var dirs []plan.Direction
		if m := setNameRE.FindStringSubmatch(name); m != nil {
			set, proto, port, fam = m[1], m[2], m[3], m[5]
			dir := plan.Ingress
			if m[4] == "out" {
				dir = plan.Egress
			}
			if slices.Contains(refs[name], dir) {
				dirs = []plan.Direction{dir}
			}
		} else if m := legacySetNameRE.FindStringSubmatch(name); m != nil {
			set, proto, port, fam = m[1], m[2], m[3], m[4]
			dirs = refs[name]
		} else {
			return nil, fmt.Errorf("line %d: set %s: not a pdsafelist set name", b.line, clip(name))
		}
		// Cloned: a piece of the file's text would keep all of it alive
		// for as long as any entry is.
		set, proto = strings.Clone(set), strings.Clone(proto)
		n, _ := strconv.Atoi(port)
		if n < 1 || n > 65535 {
			return nil, fmt.Errorf("line %d: set %s: port %d out of range", b.line, name, n)
		}
		for _, tok := range b.elems {
			p, err := parsePrefix(tok)
			if err != nil {
				return nil, fmt.Errorf("line %d: set %s: element %q: %v", b.line, name, clip(tok), err)
			}
			if p.Addr().Is6() != (fam == "6") {
				return nil, fmt.Errorf("line %d: set %s: element %s has the wrong family", b.line, name, p)
			}
			for _, d := range dirs {
				out = append(out, plan.Entry{Set: set, Prefix: p, Direction: d, Protocol: proto, Port: uint16(n)})
			}
		}
	}
	// Two spellings of one set (a legacy and a current name, or a port
	// with a leading zero) hold the same entries once.
	if len(out) == 0 {
		return nil, nil
	}
	return slices.Compact(plan.Sort(out)), nil
}

// readTable reads a table body from lines[i:], the line after the opening
// "table ... {", up to its closing brace, and returns the index after it.
// It serves both our file and nft's listing of the loaded table. offset is
// added to line numbers in errors.
func readTable(lines []string, i, offset int) (*table, int, error) {
	t := &table{}
	var cur *block
	// depth counts open braces inside cur; elemsDepth is the depth of the
	// open "elements = {", 0 outside it.
	depth, elemsDepth := 0, 0
	for ; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || l[0] == '#' {
			continue
		}
		net := braces(l)
		if cur == nil {
			switch {
			case l == "}":
				return t, i + 1, nil
			case net > 0:
				cur = &block{head: l, line: i + 1 + offset}
				t.blocks = append(t.blocks, cur)
				depth = net
			case net < 0:
				return nil, 0, fmt.Errorf("line %d: unbalanced %q", i+1+offset, clip(l))
			default:
				t.attrs = append(t.attrs, l)
			}
			continue
		}
		inElems := elemsDepth > 0
		if !inElems && strings.HasPrefix(l, "elements = {") {
			depth++
			elemsDepth, inElems = depth, true
			l = l[len("elements = {"):]
			net = braces(l)
		}
		depth += net
		switch {
		case depth <= 0 && (inElems || l != "}"):
			return nil, 0, fmt.Errorf("line %d: unbalanced %q", i+1+offset, clip(l))
		case inElems:
			for tok := range strings.SplitSeq(strings.ReplaceAll(l, "}", ""), ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					cur.elems = append(cur.elems, tok)
				}
			}
			if depth < elemsDepth {
				elemsDepth = 0
			}
		case depth == 0:
			cur = nil
		default:
			cur.lines = append(cur.lines, l)
		}
	}
	return nil, 0, fmt.Errorf("table not closed")
}

// kind splits "set NAME {" into "set" and "NAME".
func (b *block) kind() (string, string) {
	f := strings.Fields(b.head)
	if len(f) == 3 && f[2] == "{" {
		return f[0], f[1]
	}
	return "", ""
}

// braces is the count of opening minus closing braces outside quotes.
func braces(l string) int {
	n, quoted := 0, false
	for i := 0; i < len(l); i++ {
		switch l[i] {
		case '"':
			quoted = !quoted
		case '{':
			if !quoted {
				n++
			}
		case '}':
			if !quoted {
				n--
			}
		}
	}
	return n
}

// splitLines copies data into one string once; every line is a piece of
// it, not an allocation of its own.
func splitLines(data []byte) []string {
	text := string(data)
	lines := make([]string, 0, strings.Count(text, "\n")+1)
	for len(text) > 0 {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			lines = append(lines, text)
			break
		}
		lines = append(lines, text[:i])
		text = text[i+1:]
	}
	return lines
}

// clip keeps quoted input short in one-line errors.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a prefix")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
