// Package plan turns desired and current entries into a Plan. It does no
// I/O: the same inputs always give the same, sorted plan.
package plan

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Direction says which way traffic flows relative to the protected host.
// It and Protocol are one byte each, not strings: a plan of a million
// entries carries them a million times (88 bytes an entry as strings, 56
// now, and two pointers fewer for the collector to scan).
type Direction int8

// The zero Direction is a bare CIDR's (a prefix list holds no direction).
// The order is the names' order, so Compare sorts as it did by name.
const (
	Egress  Direction = 1
	Ingress Direction = 2
)

// ParseDirection accepts the two directions by name.
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(s) {
	case "ingress":
		return Ingress, nil
	case "egress":
		return Egress, nil
	}
	return 0, &NameError{Field: "direction", Name: s, Want: "ingress or egress"}
}

// NameError is a direction or protocol name no sink writes. A saved plan
// that carries one was edited, and the saved-plan guard says so.
type NameError struct{ Field, Name, Want string }

func (e *NameError) Error() string { return fmt.Sprintf("%s %q: want %s", e.Field, e.Name, e.Want) }

func (d Direction) String() string {
	switch d {
	case 0:
		return ""
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// MarshalText writes the name, so plans and JSON output read as before.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a name as MarshalText writes it, in lower case (a
// saved plan is untrusted: an edited spelling is refused, not mended); an
// empty one is a bare CIDR's.
func (d *Direction) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = 0
		return nil
	}
	v, err := ParseDirection(string(b))
	if err == nil && v.String() != string(b) {
		err = &NameError{Field: "direction", Name: string(b), Want: "ingress or egress"}
	}
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Protocol is the transport protocol a rule allows.
type Protocol int8

// The zero Protocol is a bare CIDR's; the order is the names' order.
const (
	TCP Protocol = 1
	UDP Protocol = 2
)

// ParseProtocol accepts tcp and udp.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, &NameError{Field: "protocol", Name: s, Want: "tcp or udp"}
}

func (p Protocol) String() string {
	switch p {
	case 0:
		return ""
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText writes the name, so plans and JSON output read as before.
func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a name; an empty one is a bare CIDR's.
func (p *Protocol) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*p = 0
		return nil
	}
	v, err := ParseProtocol(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Entry is the unit every sink stores: one prefix allowed for one set on one
// port. It is comparable, so it can key maps directly.
type Entry struct {
	Set       string       `json:"set"`
	Prefix    netip.Prefix `json:"prefix"`
	Direction Direction    `json:"direction,omitempty"`
	Protocol  Protocol     `json:"protocol,omitempty"`
	Port      uint16       `json:"port"`
}

func (e Entry) String() string { return string(e.AppendText(nil)) }

// AppendText appends String's form to b without formatting through fmt:
// fingerprints and outputs write it a million times a run.
func (e Entry) AppendText(b []byte) []byte {
	b = append(append(b, e.Set...), ' ')
	if e.Prefix.IsValid() {
		b = e.Prefix.AppendTo(b)
	} else {
		b = append(b, "invalid Prefix"...)
	}
	b = append(append(append(b, ' '), e.Direction.String()...), ' ')
	b = append(append(b, e.Protocol.String()...), '/')
	return strconv.AppendUint(b, uint64(e.Port), 10)
}

// Compare orders entries by set, direction, protocol, port, then prefix
// (IPv4 before IPv6).
func Compare(a, b Entry) int {
	// Early returns rather than cmp.Or, whose arguments are all evaluated:
	// sorting a million entries of one set compares the same three strings
	// every time, and the prefix is what differs.
	if a.Set != b.Set {
		return strings.Compare(a.Set, b.Set)
	}
	if a.Direction != b.Direction {
		return cmp.Compare(a.Direction, b.Direction)
	}
	if a.Protocol != b.Protocol {
		return cmp.Compare(a.Protocol, b.Protocol)
	}
	if a.Port != b.Port {
		return cmp.Compare(a.Port, b.Port)
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// Sort sorts entries in place and drops exact duplicates. Input already
// in order (what sinks read back and Calculate builds) is only checked.
func Sort(es []Entry) []Entry {
	if !slices.IsSortedFunc(es, Compare) {
		slices.SortFunc(es, Compare)
	}
	return slices.Compact(es)
}

// Sorted reports whether es is in Compare order with no duplicates, as
// Sort leaves it.
func Sorted(es []Entry) bool {
	for i := 1; i < len(es); i++ {
		if Compare(es[i-1], es[i]) >= 0 {
			return false
		}
	}
	return true
}

// Merge returns the sorted union of two sorted, duplicate-free slices in a
// new slice. When one side is much the smaller (a few additions to a
// large set), each of its entries is placed by binary search and the runs
// of the other between them are copied whole.
func Merge(a, b []Entry) []Entry {
	out := make([]Entry, 0, len(a)+len(b))
	if len(a) < len(b) {
		a, b = b, a
	}
	if len(b) > 0 && len(b) <= len(a)/galloping {
		for _, e := range b {
			i, found := slices.BinarySearchFunc(a, e, Compare)
			out = append(out, a[:i]...)
			if !found {
				out = append(out, e)
			}
			a = a[i:]
		}
		return append(out, a...)
	}
	for len(a) > 0 && len(b) > 0 {
		switch c := Compare(a[0], b[0]); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// galloping is how many times larger one side must be for a binary
// search per entry of the other (log2 of a million is 20) to beat a
// comparison per entry of both.
const galloping = 32

// without returns sorted, duplicate-free cur less the entries of sorted
// gone, each of which cur holds. With nothing gone it is cur itself,
// capped so that appending never writes into it; otherwise the runs
// between the entries gone are copied whole.
func without(cur, gone []Entry) []Entry {
	if len(gone) == 0 {
		return cur[:len(cur):len(cur)]
	}
	out := make([]Entry, 0, max(len(cur)-len(gone), 0))
	if len(gone) > len(cur)/galloping {
		for _, e := range cur {
			for len(gone) > 0 && Compare(gone[0], e) < 0 {
				gone = gone[1:]
			}
			if len(gone) > 0 && gone[0] == e {
				gone = gone[1:]
				continue
			}
			out = append(out, e)
		}
		return out
	}
	for _, e := range gone {
		i, found := slices.BinarySearchFunc(cur, e, Compare)
		out = append(out, cur[:i]...)
		if found {
			i++
		}
		cur = cur[i:]
	}
	return append(out, cur...)
}

// setName is the set name pattern config and sink markers accept
// (pkg/config, pkg/sink/marker.go): it is safe inside an nft set name, an
// ipset name and an EC2 description, so nothing read back can inject.
var setName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// ValidSetName reports whether name is a set name config accepts.
func ValidSetName(name string) bool { return setName.MatchString(name) }

// ownerID is the owner id pattern config accepts. It goes into every
// marker (rule comments, EC2 descriptions, file manifests, tags), so it is
// as narrow as the narrowest of them, an iptables comment, and can never
// end a line.
var ownerID = regexp.MustCompile(`^[A-Za-z0-9_.-]{0,64}$`)

// ValidOwnerID reports whether id is an owner id config accepts.
func ValidOwnerID(id string) bool { return ownerID.MatchString(id) }

// Validate checks e as every entry we write or keep must be: a set name
// config accepts, a canonical prefix within l, and either a full rule
// (ingress or egress, tcp or udp, port 1-65535) or a bare CIDR as a managed
// prefix list holds (no direction, protocol or port). Answers, read-back
// state and saved plans all pass through it.
func (e Entry) Validate(l Limits) error {
	if err := e.validate(l); err != nil {
		return fmt.Errorf("entry %q: %w", e.String(), err)
	}
	return nil
}

func (e Entry) validate(l Limits) error {
	if !setName.MatchString(e.Set) {
		return fmt.Errorf("set name must match %s", setName)
	}
	return e.validateRest(l)
}

// validateRest is validate without the set name, which a caller checking
// many entries of one set matches once.
func (e Entry) validateRest(l Limits) error {
	if !e.Prefix.IsValid() {
		return fmt.Errorf("invalid prefix")
	}
	if e.Prefix != e.Prefix.Masked() {
		return fmt.Errorf("prefix %s has host bits set (canonical %s)", e.Prefix, e.Prefix.Masked())
	}
	if err := l.For(e.Set).checkCanonical(e.Prefix); err != nil {
		return err
	}
	if e.Direction == 0 && e.Protocol == 0 && e.Port == 0 {
		return nil // a bare CIDR
	}
	if e.Direction != Ingress && e.Direction != Egress {
		return fmt.Errorf("direction %q: want ingress or egress", e.Direction)
	}
	if e.Protocol != TCP && e.Protocol != UDP {
		return fmt.Errorf("protocol %q: want tcp or udp", e.Protocol)
	}
	if e.Port == 0 {
		return fmt.Errorf("port 0: want 1-65535")
	}
	return nil
}
