package state

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Format 2 keeps the file small and stable. Addresses of a set are grouped
// by (first seen, last seen, TTL) and listed in one string, a host without
// its /32 or /128; times are unix seconds. An address in the set's latest
// successful answer has no last seen in the file: that time is the set's
// last success, kept in the clock file, so a run that sees what the last
// one saw does not rewrite the state file.

type fileV2 struct {
	FormatVersion int              `json:"format_version"`
	Sets          map[string]setV2 `json:"sets"`
	OpenAlerts    []string         `json:"open_alerts,omitempty"`
}

type setV2 struct {
	StaleSince int64     `json:"stale_since,omitempty"`
	Groups     []groupV2 `json:"groups"`
}

type groupV2 struct {
	First int64 `json:"first"`
	// Last is omitted for the addresses of the latest successful answer.
	Last     int64  `json:"last,omitempty"`
	TTL      int64  `json:"ttl,omitempty"`
	Prefixes string `json:"prefixes"`
}

// clockV1 is the clock file: each set's last success, the one time that
// changes on every run.
type clockV1 struct {
	LastSuccess map[string]int64 `json:"last_success"`
}

// fileV1 is the layout before format 2, still read.
type fileV1 struct {
	FormatVersion int `json:"format_version"`
	Sets          map[string]*struct {
		Addresses []struct {
			Prefix     netip.Prefix `json:"prefix"`
			FirstSeen  time.Time    `json:"first_seen"`
			LastSeen   time.Time    `json:"last_seen"`
			TTLSeconds int64        `json:"ttl_seconds"`
		} `json:"addresses"`
		LastSuccess time.Time `json:"last_success"`
		StaleSince  time.Time `json:"stale_since"`
	} `json:"sets"`
	OpenAlerts []string `json:"open_alerts"`
}

// Bounds on what a file may say: a unix time up to the year 9999 and a TTL
// up to what DNS can carry.
const (
	maxUnix = 253402300799
	maxTTL  = 1<<32 - 1
)

// decode reads a state file of format 1 or 2 and, for format 2, the clock
// file (which may be empty or missing: last successes are then unknown,
// and an unknown last seen is taken as now when used).
func decode(data, clock []byte) (*File, error) {
	var head struct {
		FormatVersion int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, err
	}
	switch head.FormatVersion {
	case 1:
		return decodeV1(data)
	case 2:
		return decodeV2(data, clock)
	}
	return nil, fmt.Errorf("format_version %d, want 1 or %d", head.FormatVersion, FormatVersion)
}

func decodeV1(data []byte) (*File, error) {
	var v fileV1
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	f := New()
	f.OpenAlerts = v.OpenAlerts
	for name, s := range v.Sets {
		if s == nil {
			return nil, fmt.Errorf("set %s: null", name)
		}
		ns := &Set{LastSuccess: s.LastSuccess, StaleSince: s.StaleSince}
		if err := inRange(s.LastSuccess, s.StaleSince); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
		var t stamps
		for _, a := range s.Addresses {
			if err := inRange(a.FirstSeen, a.LastSeen); err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
			if !a.Prefix.IsValid() {
				return nil, fmt.Errorf("set %s: invalid prefix", name)
			}
			if a.TTLSeconds < 0 || a.TTLSeconds > maxTTL {
				return nil, fmt.Errorf("set %s: ttl_seconds %d out of range", name, a.TTLSeconds)
			}
			ns.mem.push(a.Prefix.Masked(), t.add(stamp{a.FirstSeen, a.LastSeen, a.TTLSeconds}))
		}
		ns.stamps = t.table
		f.Sets[name] = ns
	}
	return f, nil
}

// fileV2In is format 2 as decode reads it: each group's prefixes are
// parsed from the document as it is, not copied into a string first.
type fileV2In struct {
	FormatVersion int                `json:"format_version"`
	Sets          map[string]setV2In `json:"sets"`
	OpenAlerts    []string           `json:"open_alerts,omitempty"`
}

type setV2In struct {
	StaleSince int64       `json:"stale_since,omitempty"`
	Groups     []groupV2In `json:"groups"`
}

type groupV2In struct {
	First    int64      `json:"first"`
	Last     int64      `json:"last,omitempty"`
	TTL      int64      `json:"ttl,omitempty"`
	Prefixes prefixText `json:"prefixes"`
}

// prefixText is a group's prefixes, parsed as the document is decoded.
// A token that is not a prefix is kept as err, for decodeV2 to report
// with the set's name, which the group does not know.
type prefixText struct {
	mem memory
	err error
}

func (t *prefixText) UnmarshalJSON(raw []byte) error {
	if string(raw) == "null" {
		// As for a string: null leaves what was there.
		return nil
	}
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return fmt.Errorf("prefixes: not a string")
	}
	t.mem, t.err = memory{}, nil
	text := raw[1 : len(raw)-1]
	// An escape or a byte outside ASCII takes the slow path: the string
	// as JSON reads it, split where strings.Fields splits. Without them
	// the document holds the text as it is, and its only white space is
	// the space (JSON allows no raw control character in a string).
	if bytes.IndexFunc(text, func(r rune) bool { return r == '\\' || r >= 0x80 }) >= 0 {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		t.mem.v4 = make([]entry4, 0, strings.Count(s, " ")+1)
		for tok := range strings.FieldsSeq(s) {
			if t.add(tok) != nil {
				return nil
			}
		}
		return nil
	}
	// Sized for a list of IPv4 addresses, the common case.
	t.mem.v4 = make([]entry4, 0, bytes.Count(text, []byte(" "))+1)
	for tok := range bytes.FieldsSeq(text) {
		if a, ok := parseIPv4(tok); ok {
			t.mem.push(netip.PrefixFrom(a, 32), 0)
			continue
		}
		if t.add(string(tok)) != nil {
			return nil
		}
	}
	if n := len(t.mem.v4); cap(t.mem.v4)-n > n/4 {
		// Mostly IPv6: the room made for IPv4 addresses is not kept.
		t.mem.v4 = slices.Clone(t.mem.v4)
	}
	return nil
}

// parseIPv4 reads a dotted IPv4 address, without a string made of it: the
// form lists are mostly made of. It accepts only what netip.ParseAddr
// accepts (four decimal octets, no leading zero); anything else goes to
// parsePrefix, which words the error.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var out [4]byte
	i := 0
	for k := range out {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, v := i, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 3; i++ {
			v = v*10 + int(b[i]-'0')
		}
		if i == start || v > 255 || (i-start > 1 && b[start] == '0') {
			return netip.Addr{}, false
		}
		out[k] = byte(v)
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(out), true
}

func (t *prefixText) add(tok string) error {
	p, err := parsePrefix(tok)
	if err != nil {
		t.mem, t.err = memory{}, err
		return err
	}
	t.mem.push(p, 0)
	return nil
}

func decodeV2(data, clock []byte) (*File, error) {
	var v fileV2In
	if err := strictUnmarshal(data, &v); err != nil {
		return nil, err
	}
	var c clockV1
	if len(bytes.TrimSpace(clock)) > 0 {
		// A clock that cannot be read only loses last successes.
		if err := json.Unmarshal(clock, &c); err != nil {
			c = clockV1{}
		}
	}
	f := New()
	f.OpenAlerts = v.OpenAlerts
	for name, s := range v.Sets {
		ns := &Set{}
		var err error
		if ns.StaleSince, err = unixTime(s.StaleSince); err != nil {
			return nil, fmt.Errorf("set %s: stale_since: %w", name, err)
		}
		if t, ok := c.LastSuccess[name]; ok {
			if ns.LastSuccess, err = unixTime(t); err != nil {
				ns.LastSuccess = time.Time{}
			}
		}
		n4, n6 := 0, 0
		for _, g := range s.Groups {
			if g.Prefixes.err != nil {
				return nil, fmt.Errorf("set %s: %w", name, g.Prefixes.err)
			}
			n4 += len(g.Prefixes.mem.v4)
			n6 += len(g.Prefixes.mem.v6)
		}
		var t stamps
		for i, g := range s.Groups {
			first, err := unixTime(g.First)
			if err != nil {
				return nil, fmt.Errorf("set %s: first: %w", name, err)
			}
			last := ns.LastSuccess
			if g.Last != 0 {
				if last, err = unixTime(g.Last); err != nil {
					return nil, fmt.Errorf("set %s: last: %w", name, err)
				}
			}
			if g.TTL < 0 || g.TTL > maxTTL {
				return nil, fmt.Errorf("set %s: ttl %d out of range", name, g.TTL)
			}
			st := t.add(stamp{first, last, g.TTL})
			m := &s.Groups[i].Prefixes.mem
			m.setStamp(st)
			if len(s.Groups) == 1 {
				// The one group of a list's set is the memory as parsed.
				ns.mem = *m
				continue
			}
			if ns.mem.v4 == nil && ns.mem.v6 == nil {
				ns.mem = memory{make([]entry4, 0, n4), make([]entry6, 0, n6)}
			}
			ns.mem.v4 = append(ns.mem.v4, m.v4...)
			ns.mem.v6 = append(ns.mem.v6, m.v6...)
			*m = memory{}
		}
		ns.stamps = t.table
		f.Sets[name] = ns
	}
	return f, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the state object")
	}
	return nil
}

// inRange refuses times format 2 cannot hold: before 1970 (but not zero,
// which means unknown) or after 9999.
func inRange(ts ...time.Time) error {
	for _, t := range ts {
		if !t.IsZero() && (t.Unix() <= 0 || t.Unix() >= maxUnix) {
			return fmt.Errorf("time %s out of range", t.Format(time.RFC3339))
		}
	}
	return nil
}

func unixTime(s int64) (time.Time, error) {
	if s == 0 {
		return time.Time{}, nil
	}
	if s < 0 || s > maxUnix {
		return time.Time{}, fmt.Errorf("%d out of range", s)
	}
	return time.Unix(s, 0).UTC(), nil
}

// splice puts texts[i] where encode wrote marker i ("\u0001i\u0001") and
// returns the document as pieces: the indented parts between markers and
// the texts themselves, which are not copied. It reports false unless
// every marker was found once and nothing else looked like one (a string
// of the document holding \x01).
func splice(doc []byte, texts []string) ([]string, bool) {
	out := make([]string, 0, 2*len(texts)+1)
	const open, close = "\"\\u0001", "\\u0001\""
	used := make([]bool, len(texts))
	for {
		j := bytes.Index(doc, []byte(open))
		if j < 0 {
			break
		}
		rest := doc[j+len(open):]
		k := bytes.Index(rest, []byte(close))
		if k < 0 {
			return nil, false
		}
		i, err := strconv.Atoi(string(rest[:k]))
		if err != nil || i < 0 || i >= len(texts) || used[i] {
			return nil, false
		}
		used[i] = true
		out = append(out, string(doc[:j+1]), texts[i])
		doc = rest[k+len(close)-1:]
	}
	for _, u := range used {
		if !u {
			return nil, false
		}
	}
	return append(out, string(doc)), true
}

// unixSeconds rounds up: a time rounded down would end a window early.
func unixSeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// parsePrefix reads one entry: a canonical prefix, or a host address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("prefix %q: not a canonical prefix", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q: not an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	if p.IsSingleIP() {
		return p.Addr().AppendTo(b)
	}
	return p.AppendTo(b)
}

// prefixList builds a group's prefixes, space-separated, in a string
// grown once: a byte slice turned into a string would be a second copy.
type prefixList struct {
	strings.Builder
	buf []byte
}

func (b *prefixList) add(p netip.Prefix) {
	b.buf = b.buf[:0]
	if b.Len() > 0 {
		b.buf = append(b.buf, ' ')
	}
	b.buf = appendPrefix(b.buf, p)
	b.Write(b.buf)
}

// layoutPasses is how many groups of times a set's addresses may fall in
// for layout to walk them once a group rather than copy them by group;
// tests set it to 0 for the other way.
var layoutPasses = 4

// layout is the state as format 2 lays it out, and the clock file.
func (f *File) layout() (fileV2, clockV1) {
	v := fileV2{FormatVersion: FormatVersion, Sets: make(map[string]setV2, len(f.Sets)), OpenAlerts: f.OpenAlerts}
	c := clockV1{LastSuccess: map[string]int64{}}
	for name, s := range f.Sets {
		success := unixSeconds(s.LastSuccess)
		if success != 0 {
			c.LastSuccess[name] = success
		}
		// Counted first, so each group's prefixes are allocated once.
		type key struct{ first, last, ttl int64 }
		keyOf := func(st stamp) key {
			k := key{unixSeconds(st.first), unixSeconds(st.last), st.ttl}
			if k.last == success {
				k.last = 0
			}
			return k
		}
		keys := make([]key, len(s.stamps))
		for i, st := range s.stamps {
			keys[i] = keyOf(st)
		}
		sizes := map[key]int{}
		for i := range s.mem.len() {
			sizes[keys[s.mem.at(i).stamp]]++
		}
		sv := setV2{StaleSince: unixSeconds(s.StaleSince), Groups: make([]groupV2, 0, len(sizes))}
		group := func(k key, ps []netip.Prefix) {
			var b prefixList
			b.Grow(len(ps) * 16)
			for _, p := range ps {
				b.add(p)
			}
			sv.Groups = append(sv.Groups, groupV2{First: k.first, Last: k.last, TTL: k.ttl, Prefixes: b.String()})
		}
		if len(sizes) <= layoutPasses && s.mem.sorted() {
			// In order, as a list's run leaves it, in a group or a few
			// (addresses first seen lately): each group written straight
			// from the addresses, a pass a group, with no copy of them
			// as prefixes (32 MB at a million).
			for k, n := range sizes {
				var b prefixList
				b.Grow(n * 16)
				var last netip.Prefix
				for i := range s.mem.len() {
					e := s.mem.at(i)
					if keys[e.stamp] != k || b.Len() > 0 && e.prefix == last {
						continue
					}
					b.add(e.prefix)
					last = e.prefix
				}
				sv.Groups = append(sv.Groups, groupV2{First: k.first, Last: k.last, TTL: k.ttl, Prefixes: b.String()})
			}
		} else {
			groups := make(map[key][]netip.Prefix, len(sizes))
			for k, n := range sizes {
				groups[k] = make([]netip.Prefix, 0, n)
			}
			for i := range s.mem.len() {
				e := s.mem.at(i)
				k := keys[e.stamp]
				groups[k] = append(groups[k], e.prefix)
			}
			for k, ps := range groups {
				if !slices.IsSortedFunc(ps, plan.ComparePrefix) {
					slices.SortFunc(ps, plan.ComparePrefix)
				}
				group(k, slices.Compact(ps))
			}
		}
		slices.SortFunc(sv.Groups, func(a, b groupV2) int {
			return cmp.Or(cmp.Compare(a.Last, b.Last), cmp.Compare(a.First, b.First), cmp.Compare(a.TTL, b.TTL))
		})
		v.Sets[name] = sv
	}
	return v, c
}

// encode writes the state file and the clock file of format 2. The same
// state always gives the same bytes.
func (f *File) encode() (data, clock []byte, err error) {
	pieces, clock, err := f.encodePieces()
	if err != nil {
		return nil, nil, err
	}
	return []byte(strings.Join(pieces, "")), clock, nil
}

// encodePieces is encode's state file as pieces to write one after
// another: the prefixes, most of the file, are not copied into one buffer.
func (f *File) encodePieces() (data []string, clock []byte, err error) {
	v, c := f.layout()
	// Indenting costs bytes per group, not per address. The prefixes are
	// most of the file and JSON writes them as they are (digits, hex,
	// dots, colons, slashes, spaces), so the document is indented with a
	// marker in their place and they are put back as they are: indenting
	// them would copy them three times more.
	var texts []string
	marked := fileV2{FormatVersion: v.FormatVersion, Sets: make(map[string]setV2, len(v.Sets)), OpenAlerts: v.OpenAlerts}
	for name, sv := range v.Sets {
		groups := slices.Clone(sv.Groups)
		for i := range groups {
			texts = append(texts, groups[i].Prefixes)
			groups[i].Prefixes = "\x01" + strconv.Itoa(len(texts)-1) + "\x01"
		}
		marked.Sets[name] = setV2{StaleSince: sv.StaleSince, Groups: groups}
	}
	doc, err := json.MarshalIndent(marked, "", " ")
	if err != nil {
		return nil, nil, err
	}
	var ok bool
	if data, ok = splice(doc, texts); !ok {
		if doc, err = json.MarshalIndent(v, "", " "); err != nil {
			return nil, nil, err
		}
		data = []string{string(doc)}
	}
	if clock, err = json.Marshal(c); err != nil {
		return nil, nil, err
	}
	return append(data, "\n"), append(clock, '\n'), nil
}
