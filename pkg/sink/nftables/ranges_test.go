package nftables

import (
	"iter"
	"slices"
	"strings"

	"go4.org/netipx"
)

// ranges turns element tokens (address, prefix or a-b range) into sorted,
// merged ranges; false if a token is none of those. The cross-check reads
// nft's JSON with it, apart from the sink's own reading.
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
	return mergeRanges(rs), true
}

// mergeRanges sorts rs and joins overlapping and adjacent ranges, as
// auto-merge does.
func mergeRanges(rs []netipx.IPRange) []netipx.IPRange {
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
	return out
}
