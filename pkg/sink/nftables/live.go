package nftables

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"go4.org/netipx"
)

// liveDrift compares the table nft has loaded (out is `nft list table inet
// T`, err its failure) with the table in our file: sets, their elements,
// chains and rules. Any difference is drift, so the next sync reloads the
// file: a hand flush, a failed load after the rename, a rule deleted.
//
// Elements are compared as address ranges, because auto-merge joins
// adjacent and overlapping prefixes and nft prints /32s bare; everything
// else is compared line by line, since render writes rules the way nft
// lists them.
func (s *Sink) liveDrift(want *table, hasEntries bool, out []byte, err error) []string {
	t := s.opts.Table
	if err != nil {
		if hasEntries {
			return []string{fmt.Sprintf("table inet %s is not loaded; load it", t)}
		}
		return nil
	}
	lines := &lineReader{text: string(out)}
	var got *table
	for {
		l, _, ok := lines.next()
		if !ok {
			break
		}
		if strings.TrimSpace(l) == "table inet "+t+" {" {
			if got, err = readTable(lines, 0); err != nil {
				return []string{fmt.Sprintf("loaded table inet %s: unreadable listing (%v); reload", t, err)}
			}
			break
		}
	}
	if got == nil {
		return []string{fmt.Sprintf("loaded table inet %s: not in nft's listing; reload", t)}
	}
	var d []string
	differ := func(what string, loaded, file int, unit string) {
		d = append(d, fmt.Sprintf("loaded table inet %s: %s differ from the file (%d %s loaded, %d in the file); reload", t, what, loaded, unit, file))
	}
	if !slices.Equal(want.attrs, got.attrs) {
		differ("table attributes", len(got.attrs), len(want.attrs), "lines")
	}
	loaded := make(map[string]*block, len(got.blocks))
	for _, b := range got.blocks {
		loaded[b.head] = b
	}
	for _, w := range want.blocks {
		name := strings.TrimSuffix(w.head, " {")
		g, ok := loaded[w.head]
		delete(loaded, w.head)
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("loaded table inet %s: %s is missing; reload", t, name))
		case !slices.Equal(w.lines, g.lines):
			differ(name+" lines", len(g.lines), len(w.lines), "lines")
		default:
			wr, wok := ranges(w.tokens())
			gr, gok := ranges(g.tokens())
			if !wok || !gok || !slices.Equal(wr, gr) {
				differ(name+" elements", len(gr), len(wr), "ranges")
			}
		}
	}
	for _, b := range got.blocks {
		if _, extra := loaded[b.head]; extra {
			d = append(d, fmt.Sprintf("loaded table inet %s: %s is not in the file; reload", t, strings.TrimSuffix(b.head, " {")))
		}
	}
	return d
}

// ranges turns element tokens (address, prefix or a-b range) into sorted,
// merged ranges; false if a token is none of those.
func ranges(toks iter.Seq[string]) ([]netipx.IPRange, bool) {
	var rs []netipx.IPRange
	for tok := range toks {
		var r netipx.IPRange
		if strings.Contains(tok, "-") {
			var err error
			if r, err = netipx.ParseIPRange(tok); err != nil {
				return nil, false
			}
		} else {
			p, err := parsePrefix(tok)
			if err != nil {
				return nil, false
			}
			r = netipx.RangeOfPrefix(p)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := out[n-1]
			next := last.To().Next() // invalid after the family's last address
			if last.From().Is4() == r.From().Is4() && (!next.IsValid() || next.Compare(r.From()) >= 0) {
				if r.To().Compare(last.To()) > 0 {
					out[n-1] = netipx.IPRangeFrom(last.From(), r.To())
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out, true
}
