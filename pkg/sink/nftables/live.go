package nftables

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	gnft "github.com/google/nftables"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// liveRead is what Current read of the kernel, carried to Apply in the
// plan's Snapshot: the table (nil when it is not loaded) and the ruleset
// generation it was read at.
type liveRead struct {
	table *liveTable
	id    identity
}

// reading is one read of the kernel: the table, or only a stamp that
// matched the generation (stamped), for Current to check against the file.
type reading struct {
	table   *liveTable
	err     error
	id      identity // id.ok: the whole read saw one generation
	stamped bool
	stamp   stamp
}

// stampedKernel reads the ruleset's identity and, when a stamp was made
// at it, returns the reading the stamp stands for (stamped); otherwise
// the table must be dumped (readKernel).
func (s *Sink) stampedKernel() reading {
	c, err := s.dial()
	if err != nil {
		return reading{err: err}
	}
	defer c.close()
	id := c.identity()
	if st, ok := s.readStamp(); ok && id.matches(st) {
		return reading{id: id, stamped: true, stamp: st}
	}
	return reading{id: id}
}

// readKernel dumps table inet T through netlink.
func (s *Sink) readKernel() reading {
	c, err := s.dial()
	if err != nil {
		return reading{err: err}
	}
	defer c.close()
	id := c.identity()
	s.dumps++
	t, err := c.read(s.opts.Table)
	if err != nil {
		return reading{err: err}
	}
	// A dump spans many messages; the generation standing still says
	// they all saw one table.
	if g, err := c.gen(); err != nil || g != id.gen {
		id.ok = false
	}
	return reading{table: t, id: id}
}

// fileTable is the table the file loads, in the netlink reading's terms:
// what a stamp says the kernel holds. A set's intervals are the file's,
// read from it when an apply needs them.
func fileTable(body *table) *liveTable {
	lt := &liveTable{attrs: body.attrs}
	for _, b := range body.blocks {
		lb := &liveBlock{head: b.head, lines: b.lines, file: b, keyLen: 4}
		if slices.Contains(b.lines, "type ipv6_addr") {
			lb.keyLen = 16
		}
		lt.blocks = append(lt.blocks, lb)
	}
	return lt
}

// elements are the set's intervals, sorted: as read, or the file's it
// stands for (maximal intervals, as the stamp vouches).
func (b *liveBlock) elements() []span {
	if b.file != nil {
		return b.file.elementSpans()
	}
	return b.spans
}

// maximal reports whether every set holds its elements as maximal
// intervals, as a load with auto-merge leaves them.
func (t *liveTable) maximal() bool {
	for _, b := range t.blocks {
		if !maximalSpans(b.elements()) {
			return false
		}
	}
	return true
}

// liveDrift compares the table the kernel holds (got, read through
// netlink; nil when not loaded, err when the read failed) with the table
// in our file: sets, their elements, chains and rules. Any difference is
// drift, so the next sync repairs it: a hand flush, a failed load after the
// rename, a rule deleted.
//
// Elements are compared as merged address ranges, because auto-merge
// joins adjacent and overlapping prefixes; everything else is compared
// line by line, since the netlink reading writes what it finds the way
// render writes the same thing.
func (s *Sink) liveDrift(want *table, hasEntries bool, got *liveTable, err error) []string {
	t := s.opts.Table
	if err != nil {
		return []string{fmt.Sprintf("loaded table inet %s: unreadable through netlink (%s); reload", t, oneline.Error(err))}
	}
	if got == nil {
		if hasEntries {
			return []string{fmt.Sprintf("table inet %s is not loaded; load it", t)}
		}
		return nil
	}
	var d []string
	differ := func(what string, loaded, file int, unit string) {
		d = append(d, fmt.Sprintf("loaded table inet %s: %s differ from the file (%d %s loaded, %d in the file); reload", t, what, loaded, unit, file))
	}
	if !slices.Equal(want.attrs, got.attrs) {
		differ("table attributes", len(got.attrs), len(want.attrs), "lines")
	}
	seen := map[string]bool{}
	for _, w := range want.blocks {
		name := strings.TrimSuffix(w.head, " {")
		seen[w.head] = true
		g := got.block(w.head)
		switch {
		case g == nil:
			d = append(d, fmt.Sprintf("loaded table inet %s: %s is missing; reload", t, name))
		case !slices.Equal(w.lines, g.lines):
			differ(name+" lines", len(g.lines), len(w.lines), "lines")
		case !equalMerged(g.elements(), w.elementSpans()):
			// Every element is compared, merged as it goes; the copy
			// is made only to count what differs.
			differ(name+" elements", len(mergeSpans(slices.Clone(g.elements()))), len(w.elementSpans()), "ranges")
		}
	}
	for _, b := range got.blocks {
		if !seen[b.head] {
			d = append(d, fmt.Sprintf("loaded table inet %s: %s is not in the file; reload", t, strings.TrimSuffix(b.head, " {")))
		}
	}
	return d
}

// maxBatch is the most interval changes sent as one element batch; a
// larger difference reloads the table from the file. It keeps the batch
// well inside the socket's send buffer (a netlink message is sent whole).
var maxBatch = 1024

// setChange is the element difference of one set: the kernel's intervals
// to delete and the ranges to add, so the set ends up holding the file's
// elements as maximal intervals, as a load with auto-merge leaves them.
type setChange struct {
	set      *nftSet
	del, add []span
}

// elementChanges returns the element batch that brings the loaded table
// to the file rendered from sets, or ok false when more than elements
// differ (or too many): then the file is loaded whole.
func (s *Sink) elementChanges(live *liveTable, sets []*nftSet) (changes []setChange, ok bool) {
	if live == nil {
		return nil, false
	}
	// The new file's structure: render it with no elements and read it
	// back as the file would be.
	var b bytes.Buffer
	s.renderSets(&b, piece(sets, nil))
	_, want, err := parse(b.String())
	if err != nil || !slices.Equal(want.attrs, live.attrs) || len(want.blocks) != len(live.blocks) {
		return nil, false
	}
	for _, w := range want.blocks {
		if g := live.block(w.head); g == nil || !slices.Equal(w.lines, g.lines) {
			return nil, false
		}
	}
	n := 0
	for _, ns := range sets {
		c := setChange{set: ns}
		// Both sorted: the difference is one walk of the two lists.
		want, have := wantSpans(ns), live.block("set "+ns.name+" {").elements()
		for i, j := 0, 0; i < len(want) || j < len(have); {
			switch {
			case j == len(have) || (i < len(want) && want[i].compare(have[j]) < 0):
				c.add = append(c.add, want[i])
				i++
			case i == len(want) || want[i].compare(have[j]) > 0:
				c.del = append(c.del, have[j])
				j++
			default:
				i, j = i+1, j+1
			}
			if n+len(c.add)+len(c.del) > maxBatch {
				return nil, false
			}
		}
		n += len(c.add) + len(c.del)
		if len(c.add)+len(c.del) > 0 {
			changes = append(changes, c)
		}
	}
	return changes, true
}

// wantSpans are the elements of ns as maximal intervals, sorted.
func wantSpans(ns *nftSet) []span {
	out := make([]span, 0, ns.n)
	for _, run := range ns.runs {
		for _, e := range run {
			out = append(out, spanOfPrefix(e.Prefix))
		}
	}
	return mergeSpans(out)
}

// added are the entries of sets that fall in the ranges changes add: the
// elements a check piece needs.
func added(sets []*nftSet, changes []setChange) []plan.Entry {
	var out []plan.Entry
	for _, c := range changes {
		// c.add is sorted and disjoint: the first span ending at or
		// after an entry's start is the only one it can overlap.
		for _, run := range c.set.runs {
			for _, e := range run {
				sp := spanOfPrefix(e.Prefix)
				k, _ := slices.BinarySearchFunc(c.add, sp.from, func(s span, a num) int { return s.to.compare(a) })
				if k < len(c.add) && c.add[k].from.compare(sp.to) <= 0 {
					out = append(out, e)
				}
			}
		}
	}
	return plan.Sort(out)
}

// batchChunk is the most elements one netlink message carries: their
// list is one attribute, whose length is 16 bits.
const batchChunk = 512

// applyElements sends changes as one netlink batch: the kernel applies
// all of it or, on any error, none of it. When the batch was the only
// change to the ruleset since the read it was planned from (read at
// generation was.gen), the table is now the new file (SHA-256 sum), which
// a stamp records.
func (s *Sink) applyElements(changes []setChange, was identity, sum [sha256.Size]byte) error {
	c, err := s.dial()
	if err != nil {
		return err
	}
	defer c.close()
	g0, gerr := c.gen()
	stampAfter := func(want uint32) {
		if g, err := c.gen(); gerr == nil && err == nil && was.ok && g0 == was.gen && g == want {
			was.gen = g
			s.writeStamp(was.stamp(sum))
		}
	}
	if len(changes) == 0 {
		stampAfter(g0)
		return nil
	}
	tbl := &gnft.Table{Name: s.opts.Table, Family: gnft.TableFamilyINet}
	for _, ch := range changes {
		set := &gnft.Set{Table: tbl, Name: ch.set.name, Interval: true}
		for _, op := range []struct {
			rs []span
			do func(*gnft.Set, []gnft.SetElement) error
		}{{ch.del, c.nft.SetDeleteElements}, {ch.add, c.nft.SetAddElements}} {
			elems := intervalElements(op.rs, ch.set.v6)
			for len(elems) > 0 {
				n := min(len(elems), batchChunk)
				if err := op.do(set, elems[:n]); err != nil {
					return err
				}
				elems = elems[n:]
			}
		}
	}
	if s.beforeFlush != nil {
		s.beforeFlush(c.nft, tbl)
	}
	if err := c.nft.Flush(); err != nil {
		return err
	}
	// Each commit moves the generation by one.
	stampAfter(g0 + 1)
	return nil
}

// intervalElements writes spans as the kernel holds intervals: a start
// key and an end key just past the span, left out at the family's end.
func intervalElements(rs []span, v6 bool) []gnft.SetElement {
	n := 4
	if v6 {
		n = 16
	}
	var out []gnft.SetElement
	for _, r := range rs {
		out = append(out, gnft.SetElement{Key: r.from.bytes(n)})
		if end, ok := r.to.next(v6); ok {
			out = append(out, gnft.SetElement{Key: end.bytes(n), IntervalEnd: true})
		}
	}
	return out
}
