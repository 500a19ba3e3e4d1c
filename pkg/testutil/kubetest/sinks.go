package kubetest

import (
	"bytes"
	byteorder "encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// Writes counts the writes a sink's client sends and, when armed, fails
// the next one before it is sent. A test client wrapper embeds it and
// calls Fire before each write and Done after it.
type Writes struct {
	mu     sync.Mutex
	writes int
	armed  bool
}

// Arm fails the next write.
func (w *Writes) Arm() {
	w.mu.Lock()
	w.armed = true
	w.mu.Unlock()
}

// Fire is the injected failure when armed.
func (w *Writes) Fire() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		w.armed = false
		return fmt.Errorf("sinktest: injected failure")
	}
	return nil
}

// Done counts a write the server took.
func (w *Writes) Done(err error) {
	if err == nil {
		w.mu.Lock()
		w.writes++
		w.mu.Unlock()
	}
}

// Count is how many writes the server took.
func (w *Writes) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// Spread is n IPv4 /32s no two of which aggregate.
func Spread(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		var b [4]byte
		byteorder.BigEndian.PutUint32(b[:], 0x0a000001+uint32(4*i))
		out[i] = netip.PrefixFrom(netip.AddrFrom4(b), 32)
	}
	return out
}

// Largest is the largest n that passes, where passes holds up to some
// limit and not beyond (a size guard's count); it fails t below min.
func Largest(t testing.TB, min int, passes func(n int) bool) int {
	t.Helper()
	lo, hi := 0, 1
	for passes(hi) {
		lo, hi = hi, 2*hi
	}
	for hi-lo > 1 {
		if m := (lo + hi) / 2; passes(m) {
			lo = m
		} else {
			hi = m
		}
	}
	if lo < min {
		t.Fatalf("passes only %d, want at least %d", lo, min)
	}
	return lo
}

// LoadManifests strictly decodes the YAML documents of file into objs,
// one each, in order.
func LoadManifests(t testing.TB, file string, objs ...any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(data, []byte("\n---\n"))
	if len(docs) != len(objs) {
		t.Fatalf("%s: %d documents, want %d", file, len(docs), len(objs))
	}
	for i, d := range docs {
		if err := yaml.UnmarshalStrict(d, objs[i]); err != nil {
			t.Fatalf("%s: document %d: %v", file, i+1, err)
		}
	}
}

// Authorized retries sync until it succeeds or 10 s pass: the authorizer
// sees new RBAC bindings through its cache, a moment later.
func Authorized(sync func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := sync()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
