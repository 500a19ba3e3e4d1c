package source

import (
	"context"
	"sync"
)

// Shared lets the sources of one run share work, such as one request for
// a URL that two sets read with different jq. Sources announce at build
// time what they will ask for (Expect); work with fewer than two
// announced users is never held. The first to ask does the work, the
// others wait for it and take the same value; once every announced user
// of a group has taken one, the group's values are dropped, so a shared
// answer is never held longer than its last reader needs it. A nil
// *Shared shares nothing.
type Shared struct {
	mu     sync.Mutex
	groups map[string]*sharedGroup
}

type sharedGroup struct {
	left  int // announced users that have not taken a value yet
	calls map[string]*sharedCall
}

type sharedCall struct {
	done chan struct{}
	val  any
}

// NewShared returns an empty Shared for one run.
func NewShared() *Shared { return &Shared{groups: map[string]*sharedGroup{}} }

// Expect announces one more user of group.
func (s *Shared) Expect(group string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil {
		g = &sharedGroup{calls: map[string]*sharedCall{}}
		s.groups[group] = g
	}
	g.left++
}

// Do returns fn's value for key within group: fn runs once per key while
// the group has announced users left, and each call counts as one user
// taking its value. fn is told whether others may take its value (shared):
// when not, it may do the caller's own work on it, such as parsing a body
// as it arrives instead of keeping it. fn runs on the caller's goroutine;
// a caller waiting for another's fn gets nil and false once ctx ends.
func (s *Shared) Do(ctx context.Context, group, key string, fn func(shared bool) any) (any, bool) {
	if s == nil {
		return fn(false), true
	}
	s.mu.Lock()
	g := s.groups[group]
	if g == nil || g.left < 1 || (g.left == 1 && len(g.calls) == 0) {
		// Nobody else will ask: nothing to share or hold.
		if g != nil {
			if g.left--; g.left < 1 {
				delete(s.groups, group)
			}
		}
		s.mu.Unlock()
		return fn(false), true
	}
	c, ok := g.calls[key]
	if !ok {
		c = &sharedCall{done: make(chan struct{})}
		g.calls[key] = c
	}
	g.left--
	if g.left == 0 {
		delete(s.groups, group)
	}
	s.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.val, true
		case <-ctx.Done():
			return nil, false
		}
	}
	c.val = fn(true)
	close(c.done)
	return c.val, true
}
