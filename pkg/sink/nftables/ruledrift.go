package nftables

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// contentDrift says how the file differs from what its entries render
// to. A changed option shows up as rules (turning on enforce adds a
// drop), so those are named: "rewrite" alone hides that the next apply
// starts dropping traffic.
func (s *Sink) contentDrift(entries []plan.Entry, data string) string {
	const msg = "file content differs from its entries (options changed or hand-edited); rewrite"
	have, want := ruleLines(data), ruleLines(string(s.render(entries)))
	var add, remove []string
	for _, r := range want {
		if !slices.Contains(have, r) {
			add = append(add, r)
		}
	}
	for _, r := range have {
		if !slices.Contains(want, r) {
			remove = append(remove, r)
		}
	}
	var parts []string
	if len(add) > 0 {
		parts = append(parts, fmt.Sprintf("adds rule(s): %s", strings.Join(add, "; ")))
	}
	if len(remove) > 0 {
		parts = append(parts, fmt.Sprintf("removes rule(s): %s", strings.Join(remove, "; ")))
	}
	if len(parts) == 0 {
		return msg
	}
	return msg + ", which " + strings.Join(parts, " and ")
}

// ruleLines lists the table's rules as "chain CHAIN: RULE", in order.
func ruleLines(data string) []string {
	var out []string
	chain := ""
	for l := range strings.SplitSeq(data, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "chain ") && strings.HasSuffix(l, "{"):
			chain = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "chain "), "{"))
		case l == "}":
			chain = ""
		case chain != "" && l != "" && !strings.HasPrefix(l, "type ") && !strings.HasPrefix(l, "#"):
			out = append(out, "chain "+chain+": "+l)
		}
	}
	return out
}
