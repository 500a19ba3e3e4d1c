package httplist

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/heappeak"
)

// textBody is n distinct public IPv4 addresses in random order, one a
// line.
func textBody(n int) []byte {
	r := rand.New(rand.NewPCG(5, 6))
	vs := make([]uint32, n)
	for i := range vs {
		vs[i] = 11<<24 + uint32(i)*151
	}
	r.Shuffle(n, func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
	var b bytes.Buffer
	for _, v := range vs {
		fmt.Fprintln(&b, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
	}
	return b.Bytes()
}

// Issue 24: a text list was read whole (with no Content-Length, through
// io.ReadAll's growing chunks and a final copy) before a line was parsed:
// twice its body allocated, about 28 bytes an address, all garbage once
// parsed, and at a million addresses that garbage's pages were what the
// union's result could not reuse. Read as it arrives, a list allocates its
// addresses (40 bytes each) and sort keys (8 bytes, doubled as they grow)
// and little else. What resolving a 100,000-line list allocates, per
// address.
func TestTextListStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates on purpose")
	}
	const n = 100_000
	data := textBody(n)
	srv, client := server(t, map[string]http.HandlerFunc{
		// Two writes: no Content-Length, as the e2e benchmark's server.
		"/list": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(data[:len(data)/2])
			_, _ = w.Write(data[len(data)/2:])
		},
	})
	parser, err := listformat.New("text", "")
	if err != nil {
		t.Fatal(err)
	}
	l := New(srv.URL+"/list", client, Options{Parser: parser, MaxBytes: 1 << 30})
	// A first run warms the client (TLS, the CA pool) outside the count.
	if r := l.Resolve(context.Background()); r.Err != nil || r.Len() != n {
		t.Fatalf("%d addresses, %v", r.Len(), r.Err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if r := l.Resolve(context.Background()); r.Err != nil || r.Len() != n {
		t.Fatalf("%d addresses, %v", r.Len(), r.Err)
	}
	runtime.ReadMemStats(&after)
	allocated := (after.TotalAlloc - before.TotalAlloc) / n
	// Before: 79 bytes an address (111 with -race); now 67 (78).
	allocatedMax := uint64(72)
	if heappeak.Race {
		allocatedMax = 90
	}
	t.Logf("allocated %d bytes an address", allocated)
	if allocated > allocatedMax {
		t.Errorf("a text list allocated %d bytes an address; want at most %d (its addresses and sort keys)", allocated, allocatedMax)
	}
}

// A text list read as it arrives fails exactly as the whole body read for
// lists sharing one answer does: a body too large or broken off says so
// even after a bad line, and every other error is the parser's.
func TestStreamedTextFailsAsTheWholeBody(t *testing.T) {
	long := "44.2.2.2\nbad line\n" + strings.Repeat("44.2.2.3\n", 200)
	routes := map[string]http.HandlerFunc{
		"/short": func(w http.ResponseWriter, _ *http.Request) {
			// Announces more than it sends: the body breaks off.
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("44.2.2.2\nbad line\n44."))
		},
	}
	for path, b := range map[string]string{
		"/good": "# list\n44.2.2.2\n193.0.2.0/24\n2001:db9::/48\n44.2.2.2\n", "/bad": "44.2.2.2\nbad line\n",
		"/long": long, "/empty": "# nothing\n\n", "/none": "", "/hostbits": "193.0.2.1/24\n",
	} {
		routes[path] = body(b)
	}
	srv, client := server(t, routes)
	text, err := listformat.New("text", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		max  int64
	}{
		{"/good", 1 << 20}, {"/good", 20}, {"/bad", 1 << 20}, {"/long", 1 << 20}, {"/long", 100},
		{"/empty", 1 << 20}, {"/none", 1 << 20}, {"/hostbits", 1 << 20}, {"/short", 1 << 20},
	} {
		url := srv.URL + tc.path
		o := Options{Parser: text, MaxBytes: tc.max}
		streamed := New(url, client, o).Resolve(context.Background())
		o.Shared = source.NewShared()
		whole := New(url, client, o)
		other := New(url, client, o)
		want := whole.Resolve(context.Background())
		if r := other.Resolve(context.Background()); fmt.Sprint(r.Err) != fmt.Sprint(want.Err) {
			t.Fatalf("%s: the lists sharing an answer differ: %v, %v", tc.path, r.Err, want.Err)
		}
		if fmt.Sprint(streamed.Err) != fmt.Sprint(want.Err) {
			t.Errorf("%s, max %d: streamed error %v, whole body %v", tc.path, tc.max, streamed.Err, want.Err)
		}
		if diff := cmp.Diff(want.Addresses, streamed.Addresses, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Errorf("%s (-whole +streamed):\n%s", tc.path, diff)
		}
		t.Logf("%s, max %d: %v", tc.path, tc.max, streamed.Err)
	}
}
