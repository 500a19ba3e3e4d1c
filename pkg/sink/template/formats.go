package template

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// Data is what a template sees. The manifest is written before the body,
// so a template renders only the body.
type Data struct {
	// Entries are every entry, sorted.
	Entries []plan.Entry
	// Prefixes is the union of every set's prefixes, aggregated; IPv4 and
	// IPv6 split it by family.
	Prefixes, IPv4, IPv6 []netip.Prefix
	Sets                 []Set
	// Rules group the prefixes by direction, protocol and port, the shape
	// firewall rules and NetworkPolicies want.
	Rules []Rule
	// NetworkPolicy fields.
	Name, Namespace string
	PodSelector     map[string]string
}

// Set is one set's entries.
type Set struct {
	Name string
	// Direction and Protocol are names ("ingress", "tcp"), so templates
	// compare them with strings.
	Direction string
	Protocol  string
	Ports     []uint16
	Prefixes  []netip.Prefix
}

// Rule is one direction, protocol and port with its prefixes.
type Rule struct {
	Direction string
	Protocol  string
	Port      uint16
	Prefixes  []netip.Prefix
}

var funcs = template.FuncMap{
	"upper": strings.ToUpper,
	"quote": strconv.Quote,
	"join": func(sep string, ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		return strings.Join(s, sep)
	},
}

type format struct {
	// comment starts a comment line; empty means the manifest lives in
	// the document itself (JSON).
	comment string
	text    string
}

var formats = map[string]format{
	// include it inside a server or location block, followed by "deny all;"
	"nginx": {comment: "#", text: `{{range .Prefixes}}allow {{.}};
{{end}}`},
	// acl pagerduty src -f /etc/haproxy/pagerduty.lst
	"haproxy": {comment: "#", text: `{{range .Prefixes}}{{.}}
{{end}}`},
	"plain": {comment: "#", text: `{{range .Prefixes}}{{.}}
{{end}}`},
	"json":              {comment: ""},
	"k8s-networkpolicy": {comment: "#", text: networkPolicyFormat},
}

func formatNames() []string { return slices.Sorted(maps.Keys(formats)) }

// data groups the entries for the templates, building only the parts the
// template reads (s.uses).
func (s *Sink) data(entries []plan.Entry) Data {
	use := s.uses
	d := Data{Name: s.opts.Name, Namespace: s.opts.Namespace, PodSelector: s.labels}
	if use.entries {
		d.Entries = entries
	}
	if use.prefixes {
		d.Prefixes = aggregate(entries)
		// Sorted IPv4 first: each family is a part of Prefixes.
		v6 := slices.IndexFunc(d.Prefixes, func(p netip.Prefix) bool { return p.Addr().Is6() })
		if v6 < 0 {
			v6 = len(d.Prefixes)
		}
		if v6 > 0 {
			d.IPv4 = d.Prefixes[:v6:v6]
		}
		if v6 < len(d.Prefixes) {
			d.IPv6 = d.Prefixes[v6:]
		}
	}
	if !use.groups {
		return d
	}
	sets := map[string]*Set{}
	type ruleKey struct {
		dir   plan.Direction
		proto plan.Protocol
		port  uint16
	}
	rules := map[ruleKey]*Rule{}
	var setOrder []string
	var ruleOrder []ruleKey
	for _, e := range entries {
		st, ok := sets[e.Set]
		if !ok {
			st = &Set{Name: e.Set, Direction: e.Direction.String(), Protocol: e.Protocol.String()}
			sets[e.Set] = st
			setOrder = append(setOrder, e.Set)
		}
		if !slices.Contains(st.Ports, e.Port) {
			st.Ports = append(st.Ports, e.Port)
		}
		st.Prefixes = append(st.Prefixes, e.Prefix)
		k := ruleKey{e.Direction, e.Protocol, e.Port}
		r, ok := rules[k]
		if !ok {
			r = &Rule{Direction: e.Direction.String(), Protocol: e.Protocol.String(), Port: e.Port}
			rules[k] = r
			ruleOrder = append(ruleOrder, k)
		}
		r.Prefixes = append(r.Prefixes, e.Prefix)
	}
	slices.Sort(setOrder)
	for _, n := range setOrder {
		st := sets[n]
		slices.Sort(st.Ports)
		st.Prefixes, _ = plan.Aggregate(st.Prefixes)
		d.Sets = append(d.Sets, *st)
	}
	slices.SortFunc(ruleOrder, func(a, b ruleKey) int {
		return plan.Compare(plan.Entry{Direction: a.dir, Protocol: a.proto, Port: a.port}, plan.Entry{Direction: b.dir, Protocol: b.proto, Port: b.port})
	})
	for _, k := range ruleOrder {
		r := rules[k]
		r.Prefixes, _ = plan.Aggregate(r.Prefixes)
		d.Rules = append(d.Rules, *r)
	}
	return d
}

// aggregate merges the entries' prefixes. With one set and port they come
// sorted, and go straight into the aggregator: one slice, not two.
func aggregate(entries []plan.Entry) []netip.Prefix {
	sorted := true
	for i := 1; i < len(entries) && sorted; i++ {
		sorted = plan.ComparePrefix(entries[i-1].Prefix, entries[i].Prefix) <= 0
	}
	if sorted {
		a := plan.NewAggregator(len(entries))
		var err error
		for _, e := range entries {
			if err = a.Add(e.Prefix); err != nil {
				break
			}
		}
		if err == nil {
			return a.Prefixes()
		}
	}
	all := make([]netip.Prefix, len(entries))
	for i, e := range entries {
		all[i] = e.Prefix
	}
	// Entries are valid prefixes, so Aggregate cannot fail.
	out, _ := plan.Aggregate(all)
	return out
}

// eachAggregated calls f with each prefix of aggregate of the entries of
// runs, in order. Entries sorted by prefix (one set, one port: the common
// file) are merged as f goes, so the million CIDRs of a large file are
// never held; others are aggregated whole first.
func eachAggregated(runs [][]plan.Entry, f func(netip.Prefix)) {
	stream, first := true, true
	var last netip.Prefix
	for e := range all(runs) {
		if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || !first && plan.ComparePrefix(last, e.Prefix) > 0 {
			stream = false
			break
		}
		last, first = e.Prefix, false
	}
	if !stream {
		for _, p := range aggregate(join(runs)) {
			f(p)
		}
		return
	}
	a := plan.NewAggregator(64)
	for e := range all(runs) {
		// Valid, masked and in order: Add cannot refuse it.
		_ = a.Add(e.Prefix)
		for _, p := range a.Take() {
			f(p)
		}
	}
	for _, p := range a.Prefixes() {
		f(p)
	}
}

// all yields the entries of runs in turn.
func all(runs [][]plan.Entry) iter.Seq[plan.Entry] {
	return func(yield func(plan.Entry) bool) {
		for _, r := range runs {
			for _, e := range r {
				if !yield(e) {
					return
				}
			}
		}
	}
}

// join is the entries of runs as one slice, copied only when there are
// several runs.
func join(runs [][]plan.Entry) []plan.Entry {
	if len(runs) == 1 {
		return runs[0]
	}
	return slices.Concat(runs...)
}

// jsonDoc is the json format: the manifest is part of the document.
type jsonDoc struct {
	GeneratedBy string              `json:"generated_by"`
	Owner       string              `json:"owner,omitempty"`
	Prefixes    []netip.Prefix      `json:"prefixes"`
	Sets        map[string][]string `json:"sets"`
	Entries     []plan.Entry        `json:"entries"`
}

const generatedBy = "pdsafelist"

// renderJSON writes the json format to w as json.MarshalIndent(jsonDoc,
// "", "  ") would, one element at a time: the document of a million
// entries is never held whole (TestJSONStreamsMarshalIndent holds it to
// MarshalIndent byte for byte).
func (s *Sink) renderJSON(w io.Writer, d Data) error {
	b := bufio.NewWriterSize(w, 64<<10)
	var buf, ind bytes.Buffer
	// value writes v indented as an element nested depth deep.
	value := func(v any, depth int) error {
		buf.Reset()
		ind.Reset()
		enc := json.NewEncoder(&buf)
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		if err := json.Indent(&ind, bytes.TrimSuffix(buf.Bytes(), []byte("\n")), strings.Repeat("  ", depth), "  "); err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		b.Write(ind.Bytes())
		return nil
	}
	// list writes n elements, each by elem, as an array nested depth deep.
	list := func(n, depth int, elem func(i int) error) error {
		if n == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteString("[\n")
		for i := range n {
			b.WriteString(strings.Repeat("  ", depth+1))
			if err := elem(i); err != nil {
				return err
			}
			if i < n-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("  ", depth) + "]")
		return nil
	}
	b.WriteString("{\n  \"generated_by\": ")
	if err := value(generatedBy, 1); err != nil {
		return err
	}
	if s.owner != "" {
		b.WriteString(",\n  \"owner\": ")
		if err := value(s.owner, 1); err != nil {
			return err
		}
	}
	b.WriteString(",\n  \"prefixes\": ")
	var text []byte
	if err := list(len(d.Prefixes), 1, func(i int) error {
		// A prefix marshals as its text, which needs no escaping.
		text = d.Prefixes[i].AppendTo(append(text[:0], '"'))
		b.Write(append(text, '"'))
		return nil
	}); err != nil {
		return err
	}
	b.WriteString(",\n  \"sets\": ")
	sets := map[string][]netip.Prefix{}
	for _, st := range d.Sets {
		if len(st.Prefixes) > 0 {
			sets[st.Name] = append(sets[st.Name], st.Prefixes...)
		}
	}
	names := slices.Sorted(maps.Keys(sets))
	if len(names) == 0 {
		b.WriteString("{}")
	} else {
		b.WriteString("{\n")
		for i, name := range names {
			b.WriteString("    ")
			if err := value(name, 2); err != nil {
				return err
			}
			b.WriteString(": ")
			ps := sets[name]
			if err := list(len(ps), 2, func(i int) error {
				text = ps[i].AppendTo(append(text[:0], '"'))
				b.Write(append(text, '"'))
				return nil
			}); err != nil {
				return err
			}
			if i < len(names)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString("  }")
	}
	b.WriteString(",\n  \"entries\": ")
	if err := list(len(d.Entries), 1, func(i int) error { return value(d.Entries[i], 2) }); err != nil {
		return err
	}
	b.WriteString("\n}\n")
	return b.Flush()
}

func (s *Sink) parseJSON(r io.Reader) (owned, unlabelled []plan.Entry, err error) {
	var doc jsonDoc
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.GeneratedBy != generatedBy {
		return nil, nil, fmt.Errorf("not written by pdsafelist (no generated_by %q); refusing to overwrite", generatedBy)
	}
	if doc.Owner != s.owner {
		return nil, nil, fmt.Errorf("written by pdsafelist owner %q, this run is owner %q; refusing to overwrite", doc.Owner, s.owner)
	}
	for _, e := range doc.Entries {
		if err := checkEntry(e); err != nil {
			return nil, nil, err
		}
	}
	owned, unlabelled = splitUnlabelled(doc.Entries)
	return owned, unlabelled, nil
}

// checkEntry keeps what a sink reads back well formed; the plan decides
// whether the entry is safe. A set name that is no set name is an
// unreadable label, not a malformed entry (splitUnlabelled).
func checkEntry(e plan.Entry) error {
	if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() {
		return fmt.Errorf("entry %q: malformed; refusing to overwrite", e.String())
	}
	return nil
}
