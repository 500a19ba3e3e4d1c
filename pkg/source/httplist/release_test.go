package httplist

import (
	"context"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// weakMemory gives a fresh copy of its answer at each Recall, as the
// state does (it unpacks it), and keeps a weak pointer to the last one.
type weakMemory struct {
	mu    sync.Mutex
	rec   source.FetchRecord
	given weak.Pointer[netip.Prefix]
}

func (m *weakMemory) Recall(string) (source.FetchRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.rec
	out.Answer = slices.Clone(m.rec.Answer)
	m.given = weak.Make(&out.Answer[0])
	return out, true
}

func (m *weakMemory) Remember(_ string, r source.FetchRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.Answer = slices.Clone(r.Answer)
	m.rec = r
}

func (m *weakMemory) held() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.given.Value() != nil
}

// Issue 24: every list of a run held its last answer, unpacked (3 MB at
// 100,000 prefixes, the ten lists of the 1M benchmark at once), while it
// was fetched and parsed. It is let go before the request and recalled
// only to be kept or reused: after a 304 the answer is still the list.
func TestLastAnswerNotHeldWhileFetching(t *testing.T) {
	answer := make([]netip.Prefix, 10_000)
	for i := range answer {
		answer[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, 0, byte(i >> 8), byte(i)}), 32)
	}
	for _, tc := range []struct {
		name   string
		status int
		want   int
	}{{"200", http.StatusOK, 1}, {"304", http.StatusNotModified, len(answer)}, {"500", http.StatusInternalServerError, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := &weakMemory{rec: source.FetchRecord{ETag: `"v1"`, Answer: answer, Answered: time.Now().Add(-time.Hour)}}
			var held atomic.Bool
			held.Store(true)
			srv, client := server(t, map[string]http.HandlerFunc{"/list": func(w http.ResponseWriter, r *http.Request) {
				runtime.GC()
				runtime.GC()
				held.Store(mem.held())
				switch tc.status {
				case http.StatusOK:
					_, _ = w.Write([]byte(`["193.0.2.1"]`))
				default:
					w.WriteHeader(tc.status)
				}
			}})
			l := New(srv.URL+"/list", client, Options{Remember: Remember{Memory: mem, Now: time.Now}})
			r := l.Resolve(context.Background())
			if held.Load() {
				t.Error("the last answer was held while the list was fetched")
			}
			if (r.Err != nil) != (tc.status == http.StatusInternalServerError) || len(r.Addresses) != tc.want {
				t.Errorf("result: %d addresses, err %v; want %d", len(r.Addresses), r.Err, tc.want)
			}
			if got := mem.rec.Answer; tc.status != http.StatusOK && !slices.Equal(got, answer) {
				t.Errorf("the remembered answer after a %d: %d prefixes, want the %d kept", tc.status, len(got), len(answer))
			}
		})
	}
}
