package nftables

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"
)

// view is a table as both readings can state it: lines per block and a
// set's elements as merged ranges.
type view struct {
	Attrs  []string
	Blocks map[string][]string
	Ranges map[string][]string
}

// netlinkView reads table inet name in namespace ns through netlink.
func netlinkView(t testing.TB, ns, name string) *view {
	t.Helper()
	s := &Sink{opts: Options{Table: name, Netns: ns}}
	lt, err := s.readLive()
	if err != nil {
		t.Fatalf("netlink read of table inet %s: %v", name, err)
	}
	if lt == nil {
		return nil
	}
	v := &view{Attrs: lt.attrs, Blocks: map[string][]string{}, Ranges: map[string][]string{}}
	for _, b := range lt.blocks {
		v.Blocks[b.head] = b.lines
		if strings.HasPrefix(b.head, "set ") {
			v.Ranges[b.head] = rangeStrings(mergeRanges(b.ipRanges()))
		}
	}
	return v
}

func rangeStrings(rs []netipx.IPRange) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// jsonView reads the same table from `nft -j list table`. nft 1.0.6's
// JSON leaves auto-merge out of a set, so autoMerge says whether it did.
func jsonView(t testing.TB, ns, name string) (v *view, autoMergeShown bool) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", name).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return nil, true
		}
		t.Fatalf("nft -j list table: %v: %s", err, out)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j: %v", err)
	}
	v = &view{Attrs: nil, Blocks: map[string][]string{}, Ranges: map[string][]string{}}
	var order []string
	for _, obj := range doc.Nftables {
		switch {
		case obj["table"] != nil:
			var tb struct {
				Flags []string `json:"flags"`
			}
			mustJSON(t, obj["table"], &tb)
			if len(tb.Flags) > 0 {
				v.Attrs = append(v.Attrs, "flags "+strings.Join(tb.Flags, ","))
			}
		case obj["set"] != nil:
			var st struct {
				Name      string            `json:"name"`
				Type      string            `json:"type"`
				Flags     []string          `json:"flags"`
				Timeout   *int              `json:"timeout"`
				Size      int               `json:"size"`
				Comment   string            `json:"comment"`
				AutoMerge *bool             `json:"auto-merge"`
				Elem      []json.RawMessage `json:"elem"`
			}
			mustJSON(t, obj["set"], &st)
			head := "set " + st.Name + " {"
			lines := []string{"type " + st.Type}
			if len(st.Flags) > 0 {
				lines = append(lines, "flags "+strings.Join(st.Flags, ","))
			}
			if st.Size != 0 {
				lines = append(lines, "size "+strconv.Itoa(st.Size))
			}
			if st.AutoMerge != nil {
				autoMergeShown = true
				if *st.AutoMerge {
					lines = append(lines, "auto-merge")
				}
			}
			if st.Comment != "" {
				lines = append(lines, "comment "+strconv.Quote(st.Comment))
			}
			v.Blocks[head] = lines
			var toks []string
			for _, e := range st.Elem {
				toks = append(toks, jsonElem(t, e))
			}
			rs, ok := ranges(slices.Values(toks))
			if !ok {
				t.Fatalf("nft -j: set %s: elements %q", st.Name, toks)
			}
			v.Ranges[head] = rangeStrings(rs)
		case obj["chain"] != nil:
			var ch struct {
				Name, Type, Hook, Policy string
				Prio                     *int `json:"prio"`
			}
			mustJSON(t, obj["chain"], &ch)
			head := "chain " + ch.Name + " {"
			v.Blocks[head] = nil
			if ch.Hook != "" {
				prio := "filter"
				if *ch.Prio != 0 {
					prio = strconv.Itoa(*ch.Prio)
				}
				v.Blocks[head] = []string{fmt.Sprintf("type %s hook %s priority %s; policy %s;", ch.Type, ch.Hook, prio, ch.Policy)}
			}
			order = append(order, head)
		case obj["rule"] != nil:
			var r struct {
				Chain   string                       `json:"chain"`
				Comment string                       `json:"comment"`
				Expr    []map[string]json.RawMessage `json:"expr"`
			}
			mustJSON(t, obj["rule"], &r)
			head := "chain " + r.Chain + " {"
			v.Blocks[head] = append(v.Blocks[head], jsonRule(t, r.Expr, r.Comment))
		}
	}
	return v, autoMergeShown
}

func mustJSON(t testing.TB, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("nft -j: %v: %s", err, raw)
	}
}

func jsonElem(t testing.TB, raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var e struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range []string `json:"range"`
	}
	mustJSON(t, raw, &e)
	switch {
	case e.Prefix != nil:
		return e.Prefix.Addr + "/" + strconv.Itoa(e.Prefix.Len)
	case len(e.Range) == 2:
		return e.Range[0] + "-" + e.Range[1]
	}
	return "<" + string(raw) + ">"
}

// jsonRule writes a rule from its JSON expressions the way render does.
func jsonRule(t testing.TB, exprs []map[string]json.RawMessage, comment string) string {
	var toks []string
	for _, e := range exprs {
		switch {
		case e["match"] != nil:
			var m struct {
				Op    string          `json:"op"`
				Left  json.RawMessage `json:"left"`
				Right json.RawMessage `json:"right"`
			}
			mustJSON(t, e["match"], &m)
			op := ""
			if m.Op != "==" {
				op = m.Op + " "
			}
			var left struct {
				Payload *struct{ Protocol, Field string } `json:"payload"`
				Meta    *struct{ Key string }             `json:"meta"`
				And     []json.RawMessage                 `json:"&"`
			}
			mustJSON(t, m.Left, &left)
			switch {
			case left.Payload != nil:
				toks = append(toks, left.Payload.Protocol+" "+left.Payload.Field+" "+op+jsonValue(t, m.Right))
			case left.Meta != nil && left.Meta.Key == "mark":
				var v uint32
				mustJSON(t, m.Right, &v)
				toks = append(toks, op+fmt.Sprintf("meta mark 0x%08x", v))
			case len(left.And) == 2:
				var mask, v uint32
				mustJSON(t, left.And[1], &mask)
				mustJSON(t, m.Right, &v)
				toks = append(toks, op+fmt.Sprintf("meta mark & 0x%08x == 0x%08x", mask, v))
			default:
				toks = append(toks, "<json "+string(m.Left)+">")
			}
		case e["accept"] != nil || string(e["accept"]) == "null":
			toks = append(toks, "accept")
		case e["drop"] != nil:
			toks = append(toks, "drop")
		case e["counter"] != nil:
			toks = append(toks, "counter")
		default:
			for k := range e {
				toks = append(toks, "<json "+k+">")
			}
		}
	}
	if comment != "" {
		toks = append(toks, "comment "+strconv.Quote(comment))
	}
	return strings.Join(toks, " ")
}

func jsonValue(t testing.TB, raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return strconv.Itoa(n)
	}
	var set struct {
		Set []int `json:"set"`
	}
	mustJSON(t, raw, &set)
	ps := make([]string, len(set.Set))
	for i, p := range slices.Sorted(slices.Values(set.Set)) {
		ps[i] = strconv.Itoa(p)
	}
	return "{ " + strings.Join(ps, ", ") + " }"
}

// crossCheck reads table inet name in namespace ns through netlink and
// through `nft -j list table` and fails the test where they disagree.
func crossCheck(t testing.TB, ns, name string) {
	t.Helper()
	nl := netlinkView(t, ns, name)
	js, autoMerge := jsonView(t, ns, name)
	if nl != nil && !autoMerge {
		for head, lines := range nl.Blocks {
			nl.Blocks[head] = slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return l == "auto-merge" })
		}
	}
	if diff := cmp.Diff(js, nl); diff != "" {
		t.Fatalf("netlink and nft -j read table inet %s differently (-json +netlink):\n%s", name, diff)
	}
}
