// Package heappeak measures the most heap a piece of code holds, for the
// memory tests that bound a sink's or the state's peak.
package heappeak

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// InUse is the heap's live and not yet swept objects.
func InUse() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// Of runs f with the collector at GOGC=25 and returns the most heap (live
// and not yet swept) it saw over the heap before f, sampled every 100 µs:
// close to the live peak, which is what RSS follows.
func Of(f func()) uint64 {
	old := debug.SetGCPercent(25)
	defer debug.SetGCPercent(old)
	runtime.GC()
	base := InUse()
	var peak atomic.Uint64
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if v := InUse(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	f()
	close(done)
	<-stopped
	if v := InUse(); v > peak.Load() {
		peak.Store(v)
	}
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// Held is the heap memory the runtime holds from the OS: live and dead
// objects, and free or unused pages it has not returned. RSS follows it.
func Held() uint64 {
	sample := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(sample)
	return sample[0].Value.Uint64() + sample[1].Value.Uint64() + sample[2].Value.Uint64()
}
