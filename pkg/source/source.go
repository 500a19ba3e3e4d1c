// Package source defines where desired addresses come from. A source
// resolves to a Result; failure is a value, never an empty answer.
package source

import (
	"cmp"
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// Kind names the family of a source, as shown in output.
type Kind string

const (
	KindDNS    Kind = "dns"
	KindHTTP   Kind = "http"
	KindStatic Kind = "static"
	KindFile   Kind = "file"
	KindVendor Kind = "vendor"
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
	// released is how many addresses Release let go.
	released int
}

// Release drops the addresses once nothing reads them but a count (a
// million of them are 40 MB), keeping their number for Len.
func (r *Result) Release() {
	r.released, r.Addresses = r.Len(), nil
}

// Len is the number of addresses, also after Release.
func (r Result) Len() int {
	if r.Addresses != nil {
		return len(r.Addresses)
	}
	return r.released
}

// Source produces addresses. Resolve must honour ctx and must not panic on
// bad input: every problem is reported through Result.Err.
type Source interface {
	Kind() Kind
	Name() string
	Resolve(ctx context.Context) Result
}

// Merge deduplicates addresses by prefix, keeping the longest TTL, and
// returns them sorted so results are stable across runs. It works in place
// (a list of a million addresses needs no union map and no second slice of
// addresses), so addrs must not be used afterwards.
func Merge(addrs []Address) []Address {
	if merged(addrs) {
		return addrs
	}
	sameV4 := true
	for i := range addrs {
		addrs[i].Prefix = addrs[i].Prefix.Masked()
		sameV4 = sameV4 && addrs[i].Prefix.Addr().Is4() && addrs[i].TTL == addrs[0].TTL
	}
	if sameV4 && len(addrs) > 1 {
		return mergeV4(addrs)
	}
	return mergeGeneral(addrs)
}

// merged says addrs are already what Merge returns: masked, sorted and
// without duplicates, as a list read by listformat.ReadText or a
// remembered answer is; merging them again would only sort them again.
func merged(addrs []Address) bool {
	for i, a := range addrs {
		if a.Prefix != a.Prefix.Masked() || i > 0 && plan.ComparePrefix(addrs[i-1].Prefix, a.Prefix) >= 0 {
			return false
		}
	}
	return true
}

// mergeGeneral sorts and deduplicates masked addresses.
func mergeGeneral(addrs []Address) []Address {
	// Longest TTL first within a prefix, so the first of each run is kept.
	slices.SortFunc(addrs, func(a, b Address) int {
		if c := plan.ComparePrefix(a.Prefix, b.Prefix); c != 0 {
			return c
		}
		return cmp.Compare(b.TTL, a.TTL)
	})
	return slices.CompactFunc(addrs, func(a, b Address) bool { return a.Prefix == b.Prefix })
}

// mergeV4 is mergeGeneral for masked IPv4 prefixes sharing one TTL, which
// every HTTP and file list is: it sorts them as integers, address then
// length as plan.ComparePrefix orders them, instead of moving 40-byte
// values that carry a pointer (a write barrier on every swap while the
// collector runs), several times faster for 8 bytes an address.
func mergeV4(addrs []Address) []Address {
	keys := make([]uint64, len(addrs))
	for i, a := range addrs {
		keys[i] = uint64(binary.BigEndian.Uint32(a.Prefix.Addr().AsSlice()))<<8 | uint64(a.Prefix.Bits())
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	ttl := addrs[0].TTL
	for i, k := range keys {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k>>8))
		addrs[i] = Address{Prefix: netip.PrefixFrom(netip.AddrFrom4(b), int(k&0xff)), TTL: ttl}
	}
	clear(addrs[len(keys):])
	return addrs[:len(keys)]
}
