// Package listformat reads published address lists: JSON, optionally
// picked apart with a jq expression, or text with one address per line.
// The http and file sources share it, so a list reads the same wherever it
// is kept.
package listformat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// Formats lists the valid format values.
var Formats = []string{"json", "text"}

// MaxEntries bounds what one list may yield. A jq expression can generate
// without end; no vendor publishes anywhere near this many prefixes.
const MaxEntries = 100_000

// Parser reads one list format. The zero value reads today's PagerDuty
// lists: a JSON array of IP or CIDR strings.
type Parser struct {
	format string
	jq     string
	code   *gojq.Code
}

// Options are the keys every list source (http, file) takes besides where
// the list is.
type Options struct {
	// Format is json (default: an array of IP or CIDR strings, or any
	// document with JQ) or text (one per line, # starts a comment).
	Format string `yaml:"format"`
	// JQ picks the addresses out of a json document (gojq); every result
	// must be a string holding an IP or CIDR.
	JQ string `yaml:"jq"`
	// MaxBytes overrides the global cap for one large list, such as AWS's
	// ip-ranges.json.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Parser builds the parser and returns the size cap: MaxBytes, or
// defaultMax when it is 0.
func (o Options) Parser(defaultMax int64) (*Parser, int64, error) {
	p, err := New(o.Format, o.JQ)
	if err != nil {
		return nil, 0, err
	}
	if o.MaxBytes < 0 {
		return nil, 0, fmt.Errorf("max_bytes %d is negative", o.MaxBytes)
	}
	if o.MaxBytes == 0 {
		return p, defaultMax, nil
	}
	return p, o.MaxBytes, nil
}

// New returns a parser for format (json or text; empty means json) and an
// optional jq expression, which only json takes. The expression is
// compiled here, so a typo fails the config rather than every run.
func New(format, jq string) (*Parser, error) {
	switch format {
	case "", "json":
		format = "json"
	case "text":
		if jq != "" {
			return nil, fmt.Errorf("jq applies to format json, not text")
		}
	default:
		return nil, fmt.Errorf("format %q: want %s", format, strings.Join(Formats, " or "))
	}
	p := &Parser{format: format, jq: jq}
	if jq == "" {
		return p, nil
	}
	q, err := gojq.Parse(jq)
	if err != nil {
		return nil, fmt.Errorf("jq %q: %s", clip(jq), oneline.Error(err))
	}
	p.code, err = gojq.Compile(q)
	if err != nil {
		return nil, fmt.Errorf("jq %q: %s", clip(jq), oneline.Error(err))
	}
	return p, nil
}

// Format is json or text.
func (p *Parser) Format() string {
	if p == nil || p.format == "" {
		return "json"
	}
	return p.format
}

// Parse validates a list. Every entry goes through plan.ParsePrefix, so a
// CIDR with host bits set is refused; an empty list is an error, because
// an empty answer must never read as "allow nothing".
func (p *Parser) Parse(ctx context.Context, data []byte) ([]netip.Prefix, error) {
	addrs, err := p.Addresses(ctx, data)
	if err != nil {
		return nil, err
	}
	return prefixes(addrs), nil
}

// Addresses is Parse for a source: the entries as the addresses of a
// result, in list order and not yet merged, without a slice of prefixes in
// between (at a million entries that copy is 32 MB).
func (p *Parser) Addresses(ctx context.Context, data []byte) ([]source.Address, error) {
	var out []source.Address
	var err error
	switch {
	case p.Format() == "text":
		out, err = parseText(data)
	case p == nil || p.code == nil:
		out, err = jsonAddresses(data)
	default:
		out, err = p.parseJQ(ctx, data)
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}

// JSONArray reads a JSON array of IP or CIDR strings.
func JSONArray(data []byte) ([]netip.Prefix, error) {
	addrs, err := jsonAddresses(data)
	if err != nil {
		return nil, err
	}
	return prefixes(addrs), nil
}

func jsonAddresses(data []byte) ([]source.Address, error) {
	if out, ok := plainArray(data); ok {
		return out, nil
	}
	return jsonArray(data)
}

func prefixes(addrs []source.Address) []netip.Prefix {
	out := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		out[i] = a.Prefix
	}
	return out
}

// plainArray reads the shape every published list has, an array of plain
// ASCII strings, in one pass without reflection, and a plain IPv4 address
// without even a string: a million entries cost one allocation, the
// result's. Anything else (escapes, other types, bad JSON, too many
// entries, an entry plan.ParsePrefix refuses) reports !ok, and jsonArray
// reads it again and words the error.
func plainArray(data []byte) ([]source.Address, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, false
	}
	// Each entry takes at least 3 bytes ("", plus a comma).
	out := make([]source.Address, 0, min(len(data)/3+1, MaxEntries))
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return nil, false // empty: jsonArray says so
	}
	for {
		if i >= len(data) || data[i] != '"' || len(out) == MaxEntries {
			return nil, false
		}
		j := i + 1
		for j < len(data) && data[j] != '"' {
			if c := data[j]; c == '\\' || c < 0x20 || c >= 0x80 {
				return nil, false
			}
			j++
		}
		if j >= len(data) {
			return nil, false
		}
		p, ok := parseIPv4(data[i+1 : j])
		if !ok {
			var err error
			if p, err = plan.ParsePrefix(string(data[i+1 : j])); err != nil {
				return nil, false
			}
		}
		out = append(out, source.Address{Prefix: p})
		i = skipSpace(data, j+1)
		if i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			if skipSpace(data, i+1) != len(data) {
				return nil, false
			}
			return out, true
		default:
			return nil, false
		}
	}
}

// parseIPv4 reads a plain dotted-quad address, the whole of b, as
// plan.ParsePrefix would (a single address is its /32); anything else,
// even what ParsePrefix accepts, reports !ok and is left to ParsePrefix.
// Like netip.ParseAddr it takes four decimal fields of at most 255
// without leading zeros.
func parseIPv4(b []byte) (netip.Prefix, bool) {
	var ip [4]byte
	field, digits := 0, 0
	val := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if digits == 1 && val == 0 {
				return netip.Prefix{}, false // leading zero
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return netip.Prefix{}, false
			}
		case c == '.' && digits > 0 && field < 3:
			ip[field] = byte(val)
			field, digits, val = field+1, 0, 0
		default:
			return netip.Prefix{}, false
		}
	}
	if field != 3 || digits == 0 {
		return netip.Prefix{}, false
	}
	ip[3] = byte(val)
	return netip.PrefixFrom(netip.AddrFrom4(ip), 32), true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

func jsonArray(data []byte) ([]source.Address, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("invalid JSON: want an array of strings")
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	if len(raw) > MaxEntries {
		return nil, fmt.Errorf("more than %d entries", MaxEntries)
	}
	out := make([]source.Address, 0, len(raw))
	for i, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return nil, fmt.Errorf("entry %d: want a string, got %s", i+1, clip(string(bytes.TrimSpace(r))))
		}
		p, err := plan.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d %q: %v", i+1, clip(s), err)
		}
		out = append(out, source.Address{Prefix: p})
	}
	return out, nil
}

func (p *Parser) parseJQ(ctx context.Context, data []byte) ([]source.Address, error) {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("invalid JSON: %s", clip(err.Error()))
	}
	var out []source.Address
	jctx, stop := withAllocBudget(ctx, jqBaseBudget+16*uint64(len(data)))
	defer stop()
	iter := p.code.RunWithContext(jctx, doc)
	for n := 1; ; n++ {
		v, ok := iter.Next()
		if !ok {
			break
		}
		if jctx.poll() {
			v = context.Cause(jctx)
		}
		if err, isErr := v.(error); isErr {
			if cause := context.Cause(jctx); errors.Is(cause, errJQBudget) {
				err = cause
			}
			return nil, fmt.Errorf("jq %q: %s", clip(p.jq), clip(err.Error()))
		}
		if n > MaxEntries {
			return nil, fmt.Errorf("jq %q: more than %d results", clip(p.jq), MaxEntries)
		}
		s, isStr := v.(string)
		if !isStr {
			// Preview encodes only its first 30 bytes: a huge value is
			// never marshalled whole to be clipped.
			return nil, fmt.Errorf("jq result %d: want a string (IP or CIDR), got %s", n, clip(gojq.Preview(v)))
		}
		pfx, err := plan.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("jq result %d %q: %v", n, clip(s), err)
		}
		out = append(out, source.Address{Prefix: pfx})
	}
	return out, nil
}

// parseText reads one address or CIDR per line; "#" starts a comment, and
// blank lines are skipped. Lines are read in place, not split into a copy
// of the body, and the result is allocated once: a text list costs what
// the same addresses as JSON do.
func parseText(data []byte) ([]source.Address, error) {
	// Editors on Windows start files with a byte-order mark.
	data = bytes.TrimPrefix(data, bom)
	out := make([]source.Address, 0, min(bytes.Count(data, []byte{'\n'})+1, MaxEntries))
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(out) >= MaxEntries {
			return nil, fmt.Errorf("more than %d entries", MaxEntries)
		}
		p, ok := parseIPv4(line)
		if !ok {
			var err error
			if p, err = plan.ParsePrefix(string(line)); err != nil {
				return nil, fmt.Errorf("line %d %q: %v", n, clip(string(line)), err)
			}
		}
		out = append(out, source.Address{Prefix: p})
	}
	return out, nil
}

// ReadText is parseText for a list read as it arrives, for a source that
// needs nothing else of the body: it reads the same lines the same way and
// fails with the same words, and an empty list is an error, as Addresses
// says; an error of r ends it and is returned as it is. It holds neither
// the body nor a slice of addresses that grows as it reads: IPv4 entries
// are kept as 8-byte keys and the addresses are allocated once, at their
// number. The result is merged (source.Merge): sorted, without
// duplicates.
func ReadText(r io.Reader) ([]source.Address, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	// Editors on Windows start files with a byte-order mark.
	if b, err := br.Peek(3); bytes.Equal(b, bom) {
		_, _ = br.Discard(3)
	} else if err != nil && err != io.EOF {
		return nil, err
	}
	var keys []uint64 // IPv4 prefixes: address << 8 | length
	var others []source.Address
	var long []byte // a line longer than the buffer
	entries := 0
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if entries >= MaxEntries {
				return nil, fmt.Errorf("more than %d entries", MaxEntries)
			}
			entries++
			p, ok := parseIPv4(line)
			if !ok {
				var perr error
				if p, perr = plan.ParsePrefix(string(line)); perr != nil {
					return nil, fmt.Errorf("line %d %q: %v", n, clip(string(line)), perr)
				}
			}
			if p = p.Masked(); p.Addr().Is4() {
				if len(keys) == cap(keys) {
					// Doubled: append grows a large slice by a quarter,
					// which allocates five times its final size.
					keys = slices.Grow(keys, max(len(keys), 1024))
				}
				keys = append(keys, uint64(binary.BigEndian.Uint32(p.Addr().AsSlice()))<<8|uint64(p.Bits()))
			} else {
				others = append(others, source.Address{Prefix: p})
			}
		}
		if err == io.EOF {
			break
		}
	}
	if entries == 0 {
		return nil, fmt.Errorf("empty list")
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	out := make([]source.Address, len(keys), len(keys)+len(others))
	for i, k := range keys {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k>>8))
		out[i].Prefix = netip.PrefixFrom(netip.AddrFrom4(b), int(k&0xff))
	}
	if len(others) == 0 {
		return out, nil
	}
	// Merge's order is one order of prefixes, whatever the order it was
	// given: the same result as merging the lines in list order.
	return source.Merge(append(out, others...)), nil
}

var bom = []byte("\xef\xbb\xbf")

// clip keeps hostile input from flooding a log line.
func clip(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return oneline.String(s)
}
