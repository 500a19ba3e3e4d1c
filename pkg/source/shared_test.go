package source

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

func TestSharedRunsOncePerKeyAndDropsAfterTheLastUser(t *testing.T) {
	ctx := context.Background()
	s := NewShared()
	for range 3 {
		s.Expect("u")
	}
	var runs atomic.Int64
	var wg sync.WaitGroup
	vals := make([]any, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals[i], _ = s.Do(ctx, "u", "k", func() any { runs.Add(1); return i })
		}()
	}
	wg.Wait()
	if runs.Load() != 1 || vals[0] != vals[1] || vals[1] != vals[2] {
		t.Fatalf("ran %d times, values %v; want one run shared by three", runs.Load(), vals)
	}
	if len(s.groups) != 0 {
		t.Fatalf("groups %v held after their last user", s.groups)
	}
	// Another key of a group is its own request; a lone user holds nothing.
	s.Expect("v")
	s.Expect("v")
	a, _ := s.Do(ctx, "v", "etag-1", func() any { return "a" })
	b, _ := s.Do(ctx, "v", "etag-2", func() any { return "b" })
	if a != "a" || b != "b" || len(s.groups) != 0 {
		t.Fatalf("got %v %v, groups %v", a, b, s.groups)
	}
	s.Expect("w")
	if v, _ := s.Do(ctx, "w", "k", func() any { return 1 }); v != 1 || len(s.groups) != 0 {
		t.Fatalf("a lone user left groups %v", s.groups)
	}
	var nilShared *Shared
	if v, _ := nilShared.Do(ctx, "x", "k", func() any { return 2 }); v != 2 {
		t.Fatal("a nil Shared must run fn")
	}
	// A waiter whose context ends stops waiting for another's fn.
	s.Expect("y")
	s.Expect("y")
	release, started := make(chan struct{}), make(chan struct{})
	go s.Do(ctx, "y", "k", func() any { close(started); <-release; return 3 })
	<-started
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if v, ok := s.Do(cctx, "y", "k", func() any { return 4 }); ok || v != nil {
		t.Fatalf("a cancelled waiter got %v, %v", v, ok)
	}
	close(release)
}
