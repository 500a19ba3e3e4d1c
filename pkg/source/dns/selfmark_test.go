package dns

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// Every query socket passes through Control, where the self mark is set.
func TestQueriesUseControl(t *testing.T) {
	s := dnstest.StartT(t, dnstest.Zone{"events.example.com": {A: []string{"193.0.2.1"}}})
	var mu sync.Mutex
	seen := map[string]int{}
	r := New(Config{Nameservers: []string{s.Addr()}, QueryTimeout: time.Second, Attempts: 1,
		Control: func(network, _ string, _ syscall.RawConn) error {
			mu.Lock()
			defer mu.Unlock()
			seen[network]++
			return nil
		}})
	if res := r.Source("events.example.com").Resolve(context.Background()); res.Err != nil || len(res.Addresses) != 1 {
		t.Fatalf("resolve: %v %v", res.Addresses, res.Err)
	}
	if seen["udp4"]+seen["udp6"]+seen["udp"] == 0 {
		t.Fatalf("Control saw no UDP socket: %v", seen)
	}
}
