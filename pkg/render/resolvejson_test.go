package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/docs/schema"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/schemacheck"
)

// encoderJSON is the document as encoding/json writes the jsonSet shape:
// the streamed ResolveJSON must produce exactly these bytes.
func encoderJSON(t *testing.T, results []resolution.SetResult) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeJSON(&b, struct {
		FormatVersion int       `json:"format_version"`
		Sets          []jsonSet `json:"sets"`
	}{FormatVersion, sets(results)}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestResolveJSONSameBytesAsEncoder(t *testing.T) {
	odd := config.SetSpec{Name: `a<b>&"c"`, Direction: "ingress", Protocol: "udp"} // nil ports
	many := make([]source.Address, 300)
	for i := range many {
		many[i] = source.Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 1, byte(i >> 8), byte(i)}), 32)}
	}
	tests := map[string][]resolution.SetResult{
		"fixture": fixture(),
		"none":    nil,
		"empty set": {{
			Spec: odd, Sources: []source.Result{},
		}},
		"escapes, zero prefixes, mapped, TTLs": {{
			Spec: odd,
			Sources: []source.Result{
				{Kind: source.KindFile, Name: "/etc/<lists>/a&b.txt\u2028", Addresses: []source.Address{{}, {Prefix: p("::ffff:44.1.2.3/128"), TTL: 1500 * time.Millisecond}, {Prefix: p("2001:db9::/48"), TTL: time.Hour}, {Prefix: p("2001:db9::/48"), TTL: time.Minute}}},
				{Kind: source.KindDNS, Name: "x", Addresses: []source.Address{}, Warnings: []string{"<w>"}, CNAMEs: []string{"a", "b"}, Err: errors.New("line one\nline <two>")},
			},
			Desired:    plan.DesiredSet{Prefixes: []netip.Prefix{{}, p("54.0.0.0/24")}, Frozen: true, Reason: "why & how"},
			Retained:   []netip.Prefix{p("2001:db9:1::/64")},
			StaleSince: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)),
		}},
		"many": {
			{Spec: config.SetSpec{Name: "big", Direction: "egress", Protocol: "tcp", Ports: []uint16{443, 80}}, Sources: []source.Result{{Kind: source.KindHTTP, Name: "https://lists.example/a", Addresses: many}}, Desired: plan.DesiredSet{Prefixes: []netip.Prefix{p("44.1.0.0/24"), p("44.1.1.0/28")}}},
			{Spec: config.SetSpec{Name: "second"}, Sources: []source.Result{{Kind: source.KindStatic, Name: "s", Err: errors.New("boom")}}},
		},
	}
	for name, results := range tests {
		t.Run(name, func(t *testing.T) {
			var got bytes.Buffer
			if err := ResolveJSON(&got, results); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(encoderJSON(t, results)), got.String()); diff != "" {
				t.Errorf("ResolveJSON differs from encoding/json (-want +got):\n%s", diff)
			}
		})
	}
}

// bigResult is one set from one list of n addresses, as resolve prints it.
func bigResult(n int) []resolution.SetResult {
	addrs := make([]source.Address, n)
	ps := make([]netip.Prefix, n)
	for i := range addrs {
		a := netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)})
		addrs[i] = source.Address{Prefix: netip.PrefixFrom(a, 32)}
		ps[i] = addrs[i].Prefix
	}
	return []resolution.SetResult{{
		Spec:    config.SetSpec{Name: "big", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}},
		Sources: []source.Result{{Kind: source.KindHTTP, Name: "https://lists.example/big", Addresses: addrs}},
		Desired: plan.DesiredSet{Name: "big", Prefixes: ps},
	}}
}

// A million addresses printed 59 MB and held it three times over (strings,
// encoder buffer, indented copy). Streamed, the output costs about one
// buffer whatever its size.
func TestResolveJSONStreams(t *testing.T) {
	results := bigResult(100_000)
	var out countingWriter
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := ResolveJSON(&out, results); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if out.n < 4_000_000 {
		t.Fatalf("wrote %d bytes, want the whole document", out.n)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10 {
		t.Errorf("allocated %d bytes for a %d-byte document; want it streamed (< 256 KiB)", got, out.n)
	}
	if got := after.Mallocs - before.Mallocs; got > 200 {
		t.Errorf("%d allocations for 200,000 prefixes; want a constant few", got)
	}
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(b []byte) (int, error) { c.n += len(b); return len(b), nil }

type failingWriter struct{ after int }

func (f *failingWriter) Write(b []byte) (int, error) {
	if f.after -= len(b); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(b), nil
}

func TestResolveJSONReportsWriteError(t *testing.T) {
	for _, after := range []int{0, 100_000} {
		if err := ResolveJSON(&failingWriter{after: after}, bigResult(20_000)); err == nil || err.Error() != "disk full" {
			t.Errorf("after %d bytes: err = %v, want disk full", after, err)
		}
	}
}

func TestResolveJSONBigIsValid(t *testing.T) {
	var b bytes.Buffer
	if err := ResolveJSON(&b, bigResult(5000)); err != nil {
		t.Fatal(err)
	}
	schemacheck.Assert(t, schema.Resolve, b.Bytes())
}

func BenchmarkResolveJSON(b *testing.B) {
	results := bigResult(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := ResolveJSON(io.Discard, results); err != nil {
			b.Fatal(err)
		}
	}
}

// The text listing of a million prefixes was built whole in memory, one
// formatted line at a time; it is streamed like the JSON.
func TestResolveTextStreams(t *testing.T) {
	results := bigResult(100_000)
	var out countingWriter
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := ResolveText(&out, results); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if out.n < 1_000_000 {
		t.Fatalf("wrote %d bytes, want the whole listing", out.n)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10 {
		t.Errorf("allocated %d bytes for a %d-byte listing; want it streamed (< 256 KiB)", got, out.n)
	}
	if err := ResolveText(&failingWriter{after: 100_000}, results); err == nil {
		t.Error("a failing writer went unreported")
	}
}

func BenchmarkResolveText(b *testing.B) {
	results := bigResult(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := ResolveText(io.Discard, results); err != nil {
			b.Fatal(err)
		}
	}
}

// The reference shape of a set in resolve and sync JSON, as encoding/json
// writes it; the streaming writer is held to these bytes.

type jsonSource struct {
	Kind      string         `json:"kind"`
	Name      string         `json:"name"`
	Addresses []string       `json:"addresses"`
	TTLs      map[string]int `json:"ttl_seconds,omitempty"`
	CNAMEs    []string       `json:"cnames,omitempty"`
	Warnings  []string       `json:"warnings,omitempty"`
	Error     string         `json:"error,omitempty"`
}

type jsonSet struct {
	Name      string         `json:"name"`
	Direction string         `json:"direction"`
	Protocol  string         `json:"protocol"`
	Ports     []uint16       `json:"ports"`
	Prefixes  []netip.Prefix `json:"prefixes"`
	Frozen    bool           `json:"frozen"`
	Reason    string         `json:"reason,omitempty"`
	// StaleSince is when a frozen set's sources started failing.
	StaleSince *time.Time     `json:"stale_since,omitempty"`
	Retained   []netip.Prefix `json:"retained,omitempty"`
	Sources    []jsonSource   `json:"sources"`
}

func sets(results []resolution.SetResult) []jsonSet {
	out := make([]jsonSet, 0, len(results))
	for _, r := range results {
		js := jsonSet{
			Name: r.Spec.Name, Direction: r.Spec.Direction, Protocol: r.Spec.Protocol, Ports: r.Spec.Ports,
			Prefixes: r.Desired.Prefixes, Frozen: r.Desired.Frozen, Reason: r.Desired.Reason,
			Sources: []jsonSource{}, Retained: r.Retained,
		}
		if !r.StaleSince.IsZero() {
			t := r.StaleSince.UTC()
			js.StaleSince = &t
		}
		if js.Prefixes == nil {
			js.Prefixes = []netip.Prefix{}
		}
		for _, s := range r.Sources {
			src := jsonSource{Kind: string(s.Kind), Name: s.Name, Addresses: make([]string, 0, len(s.Addresses)), CNAMEs: s.CNAMEs, Warnings: s.Warnings}
			for _, a := range s.Addresses {
				src.Addresses = append(src.Addresses, a.Prefix.String())
				if a.TTL > 0 {
					if src.TTLs == nil {
						src.TTLs = map[string]int{}
					}
					src.TTLs[a.Prefix.String()] = int(a.TTL / time.Second)
				}
			}
			if s.Err != nil {
				src.Error = oneline.Error(s.Err)
			}
			js.Sources = append(js.Sources, src)
		}
		out = append(out, js)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
