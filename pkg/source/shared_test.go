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
			vals[i], _ = s.Do(ctx, "u", "k", func(shared bool) any {
				if !shared {
					t.Error("fn of a value three users take told it is not shared")
				}
				runs.Add(1)
				return i
			})
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
	a, _ := s.Do(ctx, "v", "etag-1", func(bool) any { return "a" })
	b, _ := s.Do(ctx, "v", "etag-2", func(bool) any { return "b" })
	if a != "a" || b != "b" || len(s.groups) != 0 {
		t.Fatalf("got %v %v, groups %v", a, b, s.groups)
	}
	s.Expect("w")
	// A value only its caller takes is not shared: fn may parse a body as
	// it arrives instead of keeping it for others.
	if v, _ := s.Do(ctx, "w", "k", func(shared bool) any { return !shared }); v != true || len(s.groups) != 0 {
		t.Fatalf("a lone user: fn told shared = %v, groups %v", v != true, s.groups)
	}
	var nilShared *Shared
	if v, _ := nilShared.Do(ctx, "x", "k", func(shared bool) any { return !shared }); v != true {
		t.Fatal("a nil Shared must run fn, and its value is not shared")
	}
	// A waiter whose context ends stops waiting for another's fn.
	s.Expect("y")
	s.Expect("y")
	release, started := make(chan struct{}), make(chan struct{})
	go s.Do(ctx, "y", "k", func(bool) any { close(started); <-release; return 3 })
	<-started
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if v, ok := s.Do(cctx, "y", "k", func(bool) any { return 4 }); ok || v != nil {
		t.Fatalf("a cancelled waiter got %v, %v", v, ok)
	}
	close(release)
}
