package render

import (
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// changeLines are the "+"/"-" lines of one sink's plan. They print exactly
// as text/tabwriter (minwidth 0, padding 2, padded with spaces) would, but
// from the entries themselves: tabwriter keeps every cell of every line
// until it is flushed, which for a million-entry plan is a second copy of
// the output and most of a second's work.
type changeLines struct {
	add, remove      []plan.Entry
	unsafe, retired  map[plan.Entry]bool
	lastWhere        plan.Entry // only Direction, Protocol and Port
	lastWhereText    string
	lastWhereIsValid bool
	scratch          []byte
}

const changePadding = 2

func (c *changeLines) len() int { return len(c.add) + len(c.remove) }

func (c *changeLines) entry(i int) (plan.Entry, byte) {
	if i < len(c.add) {
		return c.add[i], '+'
	}
	return c.remove[i-len(c.add)], '-'
}

// whereText is where(e) without its tab, remembered for the run of
// entries with the same direction, protocol and port.
func (c *changeLines) whereText(e plan.Entry) string {
	k := plan.Entry{Direction: e.Direction, Protocol: e.Protocol, Port: e.Port}
	if !c.lastWhereIsValid || k != c.lastWhere {
		c.lastWhere, c.lastWhereText, c.lastWhereIsValid = k, strings.TrimPrefix(where(e), "\t"), true
	}
	return c.lastWhereText
}

func (c *changeLines) why(i int, e plan.Entry) string {
	if i < len(c.add) {
		return ""
	}
	switch {
	case len(c.unsafe) > 0 && c.unsafe[e]:
		return "(unsafe)"
	case len(c.retired) > 0 && c.retired[e]:
		return "(retired set)"
	}
	return ""
}

// cells appends line i's cells to buf: the symbol and set, the prefix,
// then where and why when not empty. Every cell but the last ends in a tab.
func (c *changeLines) cells(i int, buf []string) []string {
	e, sym := c.entry(i)
	buf = append(buf, "  "+string(sym)+" "+e.Set, string(c.prefixText(e.Prefix)))
	if w := c.whereText(e); w != "" {
		buf = append(buf, w)
	}
	if why := c.why(i, e); why != "" {
		buf = append(buf, why)
	}
	return buf
}

// prefixText is the prefix as %s prints it, into scratch.
func (c *changeLines) prefixText(p netip.Prefix) []byte {
	if !p.IsValid() {
		c.scratch = append(c.scratch[:0], p.String()...)
	} else {
		c.scratch = p.AppendTo(c.scratch[:0])
	}
	return c.scratch
}

// shape returns the count of cells of line i and the width of cell col
// (when it exists), without building strings.
func (c *changeLines) shape(i, col int) (n, width int) {
	e, _ := c.entry(i)
	w := c.whereText(e)
	why := c.why(i, e)
	n = 2
	if w != "" {
		n++
	}
	if why != "" {
		n++
	}
	switch {
	case col == 0:
		width = 4 + utf8.RuneCountInString(e.Set)
	case col == 1:
		width = len(c.prefixText(e.Prefix))
	case col == 2 && w != "":
		width = len(w)
	case col == 2 || col == 3:
		width = len(why)
	}
	return n, width
}

// plain reports whether the fast path prints what tabwriter would: no
// character tabwriter treats specially in any cell. Only the set name can
// hold one (it is read back from a sink, not trusted); the direction and
// protocol are names the plan writes.
func (c *changeLines) plain() bool {
	ok := func(s string) bool { return !strings.ContainsAny(s, "\t\n\v\f\r\xff") && utf8.ValidString(s) }
	for _, es := range [][]plan.Entry{c.add, c.remove} {
		for i, e := range es {
			// Entries are sorted by set: each name is checked once.
			if (i == 0 || e.Set != es[i-1].Set) && !ok(e.Set) {
				return false
			}
		}
	}
	return true
}

// write prints the lines to w.
func (c *changeLines) write(w io.Writer) {
	if c.len() == 0 {
		return
	}
	if !c.plain() {
		tw := tabwriter.NewWriter(w, 0, 4, changePadding, ' ', 0)
		var buf []string
		for i := range c.len() {
			buf = c.cells(i, buf[:0])
			io.WriteString(tw, strings.Join(buf, "\t")+"\n")
		}
		tw.Flush()
		return
	}
	out := &lineWriter{w: w}
	c.format(out, nil, 0, c.len())
	out.flush()
}

// format is tabwriter's: a column block is a run of consecutive lines that
// all have a tab-terminated cell in the column; its width is the widest
// such cell plus the padding, and blocks nest column by column.
func (c *changeLines) format(out *lineWriter, widths []int, lo, hi int) {
	col := len(widths)
	for this := lo; this < hi; this++ {
		if n, _ := c.shape(this, col); col >= n-1 {
			continue
		}
		c.writeLines(out, widths, lo, this)
		lo = this
		width := 0
		for ; this < hi; this++ {
			n, cw := c.shape(this, col)
			if col >= n-1 {
				break
			}
			width = max(width, cw+changePadding)
		}
		c.format(out, append(widths, width), lo, this)
		lo = this
	}
	c.writeLines(out, widths, lo, hi)
}

func (c *changeLines) writeLines(out *lineWriter, widths []int, lo, hi int) {
	for i := lo; i < hi; i++ {
		e, sym := c.entry(i)
		// The cells, appended in place: no string per line.
		out.b = append(append(out.b, ' ', ' ', sym, ' '), e.Set...)
		out.pad(widths, 0, 4+utf8.RuneCountInString(e.Set))
		p := c.prefixText(e.Prefix)
		out.b = append(out.b, p...)
		col := 1
		out.pad(widths, col, len(p))
		for _, cell := range [...]string{c.whereText(e), c.why(i, e)} {
			if cell != "" {
				col++
				out.b = append(out.b, cell...)
				out.pad(widths, col, len(cell))
			}
		}
		out.b = append(out.b, '\n')
		if len(out.b) > 64<<10 {
			out.flush()
		}
	}
}

// lineWriter batches small writes.
type lineWriter struct {
	w io.Writer
	b []byte
}

// pad fills cell col, width wide so far, to its column's width.
func (l *lineWriter) pad(widths []int, col, width int) {
	if col < len(widths) {
		for range widths[col] - width {
			l.b = append(l.b, ' ')
		}
	}
}

func (l *lineWriter) flush() {
	l.w.Write(l.b)
	l.b = l.b[:0]
}
