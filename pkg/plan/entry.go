// Package plan turns desired and current entries into a Plan. It does no
// I/O: the same inputs always give the same, sorted plan.
package plan

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
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
	Direction Direction    `json:"direction"`
	Protocol  string       `json:"protocol"`
	Port      uint16       `json:"port"`
}

func (e Entry) String() string {
	return fmt.Sprintf("%s %s %s %s/%d", e.Set, e.Prefix, e.Direction, e.Protocol, e.Port)
}

// Compare orders entries by set, direction, protocol, port, then prefix
// (IPv4 before IPv6).
func Compare(a, b Entry) int {
	return cmp.Or(
		strings.Compare(a.Set, b.Set),
		strings.Compare(string(a.Direction), string(b.Direction)),
		strings.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.Port, b.Port),
		a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
	)
}

// Sort sorts entries in place and drops exact duplicates.
func Sort(es []Entry) []Entry {
	slices.SortFunc(es, Compare)
	return slices.Compact(es)
}
