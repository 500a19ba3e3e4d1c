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
type Direction string

const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// ParseDirection accepts the two directions by name.
func ParseDirection(s string) (Direction, error) {
	switch d := Direction(strings.ToLower(s)); d {
	case Ingress, Egress:
		return d, nil
	}
	return "", fmt.Errorf("direction %q: want ingress or egress", s)
}

// Entry is the unit every sink stores: one prefix allowed for one set on one
// port. It is comparable, so it can key maps directly.
type Entry struct {
	Set       string       `json:"set"`
	Prefix    netip.Prefix `json:"prefix"`
	Direction Direction    `json:"direction,omitempty"`
	Protocol  string       `json:"protocol,omitempty"`
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
	b = append(append(append(b, ' '), e.Direction...), ' ')
	b = append(append(b, e.Protocol...), '/')
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
		return strings.Compare(string(a.Direction), string(b.Direction))
	}
	if a.Protocol != b.Protocol {
		return strings.Compare(a.Protocol, b.Protocol)
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
// new slice, in one pass.
func Merge(a, b []Entry) []Entry {
	out := make([]Entry, 0, len(a)+len(b))
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

// setName is the set name pattern config and sink markers accept
// (pkg/config, pkg/sink/marker.go): it is safe inside an nft set name, an
// ipset name and an EC2 description, so nothing read back can inject.
var setName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// ValidSetName reports whether name is a set name config accepts.
func ValidSetName(name string) bool { return setName.MatchString(name) }

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
	if err := l.For(e.Set).Check(e.Prefix); err != nil {
		return err
	}
	if e.Direction == "" && e.Protocol == "" && e.Port == 0 {
		return nil // a bare CIDR
	}
	if e.Direction != Ingress && e.Direction != Egress {
		return fmt.Errorf("direction %q: want ingress or egress", e.Direction)
	}
	if e.Protocol != "tcp" && e.Protocol != "udp" {
		return fmt.Errorf("protocol %q: want tcp or udp", e.Protocol)
	}
	if e.Port == 0 {
		return fmt.Errorf("port 0: want 1-65535")
	}
	return nil
}
