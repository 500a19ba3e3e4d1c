// Package static is a source of CIDRs written in the config.
package static

import (
	"context"
	"fmt"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

type static struct {
	name    string
	entries []string
}

// New returns a source for CIDRs or addresses given inline. Bad entries,
// including a CIDR with host bits set, fail the source when it resolves,
// like any other source.
func New(name string, entries []string) source.Source {
	return &static{name: name, entries: entries}
}

func (s *static) Kind() source.Kind { return source.KindStatic }
func (s *static) Name() string      { return s.name }

func (s *static) Resolve(context.Context) source.Result {
	res := source.Result{Kind: source.KindStatic, Name: s.name}
	addrs := make([]source.Address, 0, len(s.entries))
	for i, e := range s.entries {
		p, err := plan.ParsePrefix(e)
		if err != nil {
			res.Err = fmt.Errorf("static %s: entry %d %q: %w", s.name, i+1, e, err)
			return res
		}
		addrs = append(addrs, source.Address{Prefix: p})
	}
	res.Addresses = source.Merge(addrs)
	return res
}
