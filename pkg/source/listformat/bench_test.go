package listformat

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/itchyny/gojq"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// BenchmarkParse100k reads one list at the per-list cap, as the http and
// file sources do, as JSON and as text (Text: the same addresses one a
// line; its B/op is to be no more than Addresses').
func BenchmarkParse100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := make([]string, MaxEntries)
	for i := range addrs {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		addrs[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	data, _ := json.Marshal(addrs)
	p, err := New("json", "")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Parse(context.Background(), data); err != nil {
				b.Fatal(err)
			}
		}
	})
	text := []byte(strings.Join(addrs, "\n") + "\n")
	tp, err := New("text", "")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Text", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tp.Addresses(context.Background(), text); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Addresses", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Addresses(context.Background(), data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTextBody100k reads a text list of 100,000 addresses from a
// body arriving in pieces, as the http source does with no Content-Length:
// Whole reads the body (io.ReadAll), parses it and merges the addresses,
// as a list sharing its answer does and every text list did; Streamed
// parses it as it arrives (ReadText). B/op is what a list leaves as
// garbage besides its addresses (4 MB).
func BenchmarkTextBody100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := make([]string, MaxEntries)
	for i := range addrs {
		v := r.Uint32()&0x00ffffff | uint32(11+r.IntN(89))<<24
		addrs[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	text := []byte(strings.Join(addrs, "\n") + "\n")
	// Pieces of 16 KB, a TLS record's worth.
	body := func() io.Reader { return &pieces{data: text, size: 16 << 10} }
	tp, err := New("text", "")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := io.ReadAll(body())
			if err != nil {
				b.Fatal(err)
			}
			out, err := tp.Addresses(context.Background(), data)
			if err != nil {
				b.Fatal(err)
			}
			source.Merge(out)
		}
	})
	b.Run("Streamed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ReadText(body()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// pieces reads data at most size bytes at a time.
type pieces struct {
	data []byte
	size int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), p.size)], p.data)
	p.data = p.data[n:]
	return n, nil
}

// BenchmarkJQ100k picks 100,000 prefixes out of an AWS-shaped document, so
// the cost of the jq allocation budget shows.
func BenchmarkJQ100k(b *testing.B) {
	data := awsShaped(MaxEntries)
	p, err := New("json", `.prefixes[] | select(.service == "EC2") | .ip_prefix`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(context.Background(), data); err != nil {
			b.Fatal(err)
		}
	}
}

// awsShaped is a document shaped like AWS's ip-ranges.json with n EC2
// prefixes.
func awsShaped(n int) []byte {
	type entry struct {
		Prefix  string `json:"ip_prefix"`
		Service string `json:"service"`
	}
	var doc struct {
		Prefixes []entry `json:"prefixes"`
	}
	for i := range n {
		doc.Prefixes = append(doc.Prefixes, entry{netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}).String() + "/32", "EC2"})
	}
	data, _ := json.Marshal(doc)
	return data
}

// BenchmarkJQBudget runs one AWS-sized expression under the allocation
// budget and under a plain context, so the budget's own cost (a clock
// read before every instruction) shows against its baseline.
func BenchmarkJQBudget(b *testing.B) {
	data := awsShaped(MaxEntries)
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		b.Fatal(err)
	}
	q, err := gojq.Parse(`.prefixes[] | select(.service == "EC2") | .ip_prefix`)
	if err != nil {
		b.Fatal(err)
	}
	code, err := gojq.Compile(q)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, ctx func() (context.Context, func())) {
		for b.Loop() {
			c, stop := ctx()
			n := 0
			for iter := code.RunWithContext(c, doc); ; n++ {
				v, ok := iter.Next()
				if !ok {
					break
				}
				if err, isErr := v.(error); isErr {
					b.Fatal(err)
				}
			}
			stop()
			if n != MaxEntries {
				b.Fatalf("%d results, want %d", n, MaxEntries)
			}
		}
	}
	b.Run("plain", func(b *testing.B) {
		run(b, func() (context.Context, func()) { return context.Background(), func() {} })
	})
	b.Run("budget", func(b *testing.B) {
		run(b, func() (context.Context, func()) { return withAllocBudget(context.Background(), 1<<40) })
	})
}
