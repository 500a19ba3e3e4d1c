// Package source defines where desired addresses come from. A source
// resolves to a Result; failure is a value, never an empty answer.
package source

import (
	"context"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"net/netip"
	"sort"
	"time"
)

// Kind names the family of a source, as shown in output.
type Kind string

const (
	KindDNS    Kind = "dns"
	KindHTTP   Kind = "http"
	KindStatic Kind = "static"
	KindFile   Kind = "file"
)

// Address is one resolved prefix and how long its source vouches for it.
type Address struct {
	Prefix netip.Prefix
	// TTL is zero when the source gives none (HTTP lists, static CIDRs).
	TTL time.Duration
}

// Result is what one source produced. When Err is set the source failed and
// Addresses must not be used: a failure is never "empty".
type Result struct {
	Kind      Kind
	Name      string
	Addresses []Address
	// CNAMEs lists the names followed to reach the addresses (DNS only).
	// They are recorded for people and never become addresses.
	CNAMEs   []string
	Warnings []string
	Err      error
}

// Source produces addresses. Resolve must honour ctx and must not panic on
// bad input: every problem is reported through Result.Err.
type Source interface {
	Kind() Kind
	Name() string
	Resolve(ctx context.Context) Result
}

// Merge deduplicates addresses by prefix, keeping the longest TTL, and
// returns them sorted so results are stable across runs.
func Merge(addrs []Address) []Address {
	best := make(map[netip.Prefix]time.Duration, len(addrs))
	for _, a := range addrs {
		p := a.Prefix.Masked()
		if ttl, ok := best[p]; !ok || a.TTL > ttl {
			best[p] = a.TTL
		}
	}
	out := make([]Address, 0, len(best))
	for p, ttl := range best {
		out = append(out, Address{Prefix: p, TTL: ttl})
	}
	sort.Slice(out, func(i, j int) bool { return plan.ComparePrefix(out[i].Prefix, out[j].Prefix) < 0 })
	return out
}
