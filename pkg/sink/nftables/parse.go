package nftables

import (
	"fmt"
	"iter"
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
	// Unlabelled are the entries of nft sets whose name no longer names
	// a set (edited by hand), with Set cleared: still ours, for the plan
	// to give to a routed set.
	Unlabelled []plan.Entry
}

// block is one "set NAME {" or "chain NAME {" (or any other block) inside
// a table, as written in our file or as listed by nft.
type block struct {
	head  string   // the opening line, e.g. "set api_tcp443_out_v4 {"
	lines []string // trimmed lines inside, elements left out
	// elems are the raw text of each "elements = {" clause, from that
	// line to the one that closes it: tokens are read from it when
	// needed, so a million elements cost no slice of a million strings.
	elems []string
	line  int // line number of the head
	// spans are a set's elements as maximal intervals, sorted: kept by
	// parseLive, or read by elementSpans when first needed.
	spans     []span
	spansRead bool
}

// table is the body of one "table inet T { ... }".
type table struct {
	attrs  []string // lines directly in the table, outside blocks
	blocks []*block
	spans  bool // entries also keeps each set's spans
}

var (
	// Current names carry the direction after the port; legacy names
	// (before direction was part of the name) take it from the chain.
	// The set part is read loosely: one that is no set name (edited by
	// hand) makes its entries unlabelled, not the file unreadable.
	setNameRE       = regexp.MustCompile(`^([A-Za-z0-9_]+)_(tcp|udp)([0-9]{1,5})_(in|out)_v(4|6)$`)
	legacySetNameRE = regexp.MustCompile(`^([A-Za-z0-9_]+)_(tcp|udp)([0-9]{1,5})_v(4|6)$`)
	ruleSetRE       = regexp.MustCompile(`@([A-Za-z0-9_]+)\b`)
)

// Parse reads a file this sink wrote. It refuses anything else with one line
// that says why, because a file we did not write is not ours to replace.
func Parse(data []byte) (*File, error) {
	f, _, err := parse(string(data))
	return f, err
}

func parse(text string) (*File, *table, error) { return parseTable(text, false) }

// parseLive parses as parse does and keeps each set's elements as maximal
// intervals, for the live check to compare with the kernel's: parsed once
// with the entries, not read again from the text.
func parseLive(text string) (*File, *table, error) { return parseTable(text, true) }

func parseTable(text string, spans bool) (*File, *table, error) {
	m := headerRE.FindStringSubmatch(text)
	if m == nil {
		return nil, nil, fmt.Errorf("not written by pdsafelist (its first lines are not the %q header); refusing to overwrite", marker)
	}
	f := &File{Table: strings.Clone(m[1])}
	const skipped = 3 // header lines
	lines := &lineReader{text: text[len(m[0]):]}
	var body *table
	for {
		raw, _, ok := lines.next()
		if !ok {
			break
		}
		l := strings.TrimSpace(raw)
		switch {
		case l == "" || l[0] == '#':
		case body == nil && (l == "table inet "+f.Table+" {}" || l == "delete table inet "+f.Table):
		case body == nil && l == "table inet "+f.Table+" {":
			t, err := readTable(lines, skipped)
			if err != nil {
				return nil, nil, err
			}
			body = t
			body.spans = spans
		default:
			// Anything outside our table is someone else's: rewriting the
			// file would lose it.
			return nil, nil, fmt.Errorf("line %d: %q is outside table inet %s; refusing to overwrite a file holding more than pdsafelist's table", lines.num+skipped, clip(l), f.Table)
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
	invalid := invalidSetName()
	if i := slices.IndexFunc(entries, invalid); i >= 0 {
		f.Entries = slices.DeleteFunc(slices.Clone(entries), invalid)
		for _, e := range entries[i:] {
			if invalid(e) {
				e.Set = ""
				f.Unlabelled = append(f.Unlabelled, e)
			}
		}
		f.Unlabelled = plan.Sort(f.Unlabelled)
	}
	return f, body, nil
}

// invalidSetName reports whether an entry's set is no valid set name. The
// entries come sorted by set, so the name is checked once per run of
// them, not a regular expression per entry.
func invalidSetName() func(plan.Entry) bool {
	var last string
	lastInvalid, checked := false, false
	return func(e plan.Entry) bool {
		if !checked || e.Set != last {
			last, lastInvalid, checked = e.Set, !plan.ValidSetName(e.Set), true
		}
		return lastInvalid
	}
}

// entries turns the table's sets and the chains that use them into entries:
// a set no rule of its direction uses allows nothing and is left out, so the
// next apply drops it.
func (t *table) entries() ([]plan.Entry, error) {
	refs := map[string][]plan.Direction{}
	for _, b := range t.blocks {
		kind, name := b.kind()
		if kind != "chain" {
			continue
		}
		dir, err := plan.ParseDirection(name)
		if err != nil || dir.String() != name {
			continue
		}
		for _, l := range b.lines {
			for _, m := range ruleSetRE.FindAllStringSubmatch(l, -1) {
				if !slices.Contains(refs[m[1]], dir) {
					refs[m[1]] = append(refs[m[1]], dir)
				}
			}
		}
	}
	// One element a line is how render writes them; the count sizes the
	// entries once instead of growing them a quarter at a time.
	n := 0
	for _, b := range t.blocks {
		if _, _, _, _, dirs, err := b.setInfo(refs); err == nil {
			for _, e := range b.elems {
				n += (strings.Count(e, "\n") + 1) * len(dirs)
			}
		}
	}
	out := make([]plan.Entry, 0, n)
	for _, b := range t.blocks {
		if kind, _ := b.kind(); kind != "set" {
			continue
		}
		set, proto, port, fam, dirs, err := b.setInfo(refs)
		if err != nil {
			return nil, err
		}
		_, name := b.kind()
		// Cloned: a piece of the file's text would keep all of it alive
		// for as long as any entry is.
		set = strings.Clone(set)
		if t.spans {
			// One element a line, as render writes them.
			n := 0
			for _, e := range b.elems {
				n += strings.Count(e, "\n") + 1
			}
			b.spans = make([]span, 0, n)
		}
		for tok := range b.tokens() {
			p, err := parsePrefix(tok)
			if err != nil {
				return nil, fmt.Errorf("line %d: set %s: element %q: %v", b.line, name, clip(tok), err)
			}
			if p.Addr().Is6() != (fam == "6") {
				return nil, fmt.Errorf("line %d: set %s: element %s has the wrong family", b.line, name, p)
			}
			for _, d := range dirs {
				out = append(out, plan.Entry{Set: set, Prefix: p, Direction: d, Protocol: proto, Port: port})
			}
			if t.spans {
				b.spans = append(b.spans, spanOfPrefix(p))
			}
		}
		if t.spans {
			b.spans, b.spansRead = mergeSpans(b.spans), true
		}
	}
	// Two spellings of one set (a legacy and a current name, or a port
	// with a leading zero) hold the same entries once.
	if len(out) == 0 {
		return nil, nil
	}
	return slices.Compact(plan.Sort(out)), nil
}

// elementSpans are the block's elements as maximal intervals, sorted. A
// file that parsed holds only addresses and prefixes; a token that is
// neither (never, after parse) is left out, which reads as drift.
func (b *block) elementSpans() []span {
	if !b.spansRead {
		for tok := range b.tokens() {
			if p, err := parsePrefix(tok); err == nil {
				b.spans = append(b.spans, spanOfPrefix(p))
			}
		}
		b.spans, b.spansRead = mergeSpans(b.spans), true
	}
	return b.spans
}

// setInfo reads a set block's name: the set, protocol, port and family it
// holds and the directions whose chains use it.
func (b *block) setInfo(refs map[string][]plan.Direction) (set string, proto plan.Protocol, port uint16, fam string, dirs []plan.Direction, err error) {
	kind, name := b.kind()
	if kind != "set" {
		return "", 0, 0, "", nil, fmt.Errorf("not a set")
	}
	var portText, protoText string
	if m := setNameRE.FindStringSubmatch(name); m != nil {
		set, protoText, portText, fam = m[1], m[2], m[3], m[5]
		dir := plan.Ingress
		if m[4] == "out" {
			dir = plan.Egress
		}
		if slices.Contains(refs[name], dir) {
			dirs = []plan.Direction{dir}
		}
	} else if m := legacySetNameRE.FindStringSubmatch(name); m != nil {
		set, protoText, portText, fam = m[1], m[2], m[3], m[4]
		dirs = refs[name]
	} else {
		return "", 0, 0, "", nil, fmt.Errorf("line %d: set %q: not a pdsafelist set name", b.line, clip(name))
	}
	n, _ := strconv.Atoi(portText)
	if n < 1 || n > 65535 {
		return "", 0, 0, "", nil, fmt.Errorf("line %d: set %s: port %d out of range", b.line, name, n)
	}
	// The name patterns allow only tcp and udp.
	proto, _ = plan.ParseProtocol(protoText)
	return set, proto, uint16(n), fam, dirs, nil
}

// tokens yields the block's element tokens as written, split the way nft
// reads them: by line, then by comma, with braces left out.
func (b *block) tokens() iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, clause := range b.elems {
			first := true
			for l := range strings.Lines(clause) {
				l = strings.TrimSpace(l)
				if first {
					// The opening line holds its elements after the brace.
					l, first = strings.TrimPrefix(l, "elements = {"), false
				} else if l == "" || l[0] == '#' {
					continue
				}
				if strings.Contains(l, "}") {
					l = strings.ReplaceAll(l, "}", "")
				}
				for tok := range strings.SplitSeq(l, ",") {
					if tok = strings.TrimSpace(tok); tok != "" && !yield(tok) {
						return
					}
				}
			}
		}
	}
}

// readTable reads a table body from lines, from the line after the opening
// "table ... {" up to its closing brace. It serves both our file and nft's
// listing of the loaded table. offset is added to line numbers in errors.
func readTable(lines *lineReader, offset int) (*table, error) {
	t := &table{}
	var cur *block
	// depth counts open braces inside cur; elemsDepth is the depth of the
	// open "elements = {", 0 outside it; elemsStart is where its line
	// starts in the text.
	depth, elemsDepth, elemsStart := 0, 0, 0
	for {
		raw, start, ok := lines.next()
		if !ok {
			break
		}
		l := strings.TrimSpace(raw)
		if l == "" || l[0] == '#' {
			continue
		}
		net := braces(l)
		if cur == nil {
			switch {
			case l == "}":
				return t, nil
			case net > 0:
				cur = &block{head: l, line: lines.num + offset}
				t.blocks = append(t.blocks, cur)
				depth = net
			case net < 0:
				return nil, fmt.Errorf("line %d: unbalanced %q", lines.num+offset, clip(l))
			default:
				t.attrs = append(t.attrs, l)
			}
			continue
		}
		inElems := elemsDepth > 0
		if !inElems && strings.HasPrefix(l, "elements = {") {
			depth++
			elemsDepth, inElems, elemsStart = depth, true, start
			l = l[len("elements = {"):]
			net = braces(l)
		}
		depth += net
		switch {
		case depth <= 0 && (inElems || l != "}"):
			return nil, fmt.Errorf("line %d: unbalanced %q", lines.num+offset, clip(l))
		case inElems:
			if depth < elemsDepth {
				cur.elems = append(cur.elems, lines.text[elemsStart:start+len(raw)])
				elemsDepth = 0
			}
		case depth == 0:
			cur = nil
		default:
			cur.lines = append(cur.lines, l)
		}
	}
	return nil, fmt.Errorf("table not closed")
}

// lineReader yields the lines of text one at a time, as pieces of it.
type lineReader struct {
	text string
	off  int // where the next line starts
	num  int // lines read so far: the number of the last one
}

// next returns the next line without its newline and where it starts.
func (r *lineReader) next() (line string, start int, ok bool) {
	if r.off >= len(r.text) {
		return "", 0, false
	}
	start = r.off
	if i := strings.IndexByte(r.text[start:], '\n'); i >= 0 {
		line, r.off = r.text[start:start+i], start+i+1
	} else {
		line, r.off = r.text[start:], len(r.text)
	}
	r.num++
	return line, start, true
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
