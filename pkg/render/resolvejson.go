package render

import (
	"bufio"
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// ResolveJSON prints resolve results as format_version 1 JSON. The
// document is streamed: a list of a million addresses is written prefix by
// prefix into a buffered writer instead of being built, encoded and
// re-indented in memory (which held three copies of a 59 MB document). The
// bytes are the ones encoding/json writes for the jsonSet shape with a
// two-space indent; a test holds the two to the same output.
func ResolveJSON(w io.Writer, results []resolution.SetResult) error {
	jw := &jsonWriter{w: bufio.NewWriterSize(w, 64<<10)}
	jw.raw("{\n")
	jw.field(1, "format_version", FormatVersion, false)
	jw.sets(results)
	return jw.end()
}

// sets writes the top-level "sets" member, which resolve and sync share.
func (jw *jsonWriter) sets(results []resolution.SetResult) {
	jw.key(1, "sets", true)
	jw.open(len(results) == 0)
	for i, r := range results {
		jw.sep(i > 0)
		jw.indent(2)
		jw.set(r)
	}
	jw.close(1, ']', len(results) == 0)
}

// end closes the top-level object and flushes.
func (jw *jsonWriter) end() error {
	jw.raw("\n}\n")
	if jw.err != nil {
		return jw.err
	}
	return jw.w.Flush()
}

func (jw *jsonWriter) set(r resolution.SetResult) {
	const d = 3 // depth of the set's fields
	jw.raw("{\n")
	jw.field(d, "name", r.Spec.Name, false)
	jw.field(d, "direction", r.Spec.Direction, true)
	jw.field(d, "protocol", r.Spec.Protocol, true)
	jw.field(d, "ports", r.Spec.Ports, true)
	jw.key(d, "prefixes", true)
	jw.prefixes(d, r.Desired.Prefixes)
	jw.field(d, "frozen", r.Desired.Frozen, true)
	if r.Desired.Reason != "" {
		jw.field(d, "reason", r.Desired.Reason, true)
	}
	if !r.StaleSince.IsZero() {
		jw.field(d, "stale_since", r.StaleSince.UTC(), true)
	}
	if len(r.Retained) > 0 {
		jw.key(d, "retained", true)
		jw.prefixes(d, r.Retained)
	}
	jw.key(d, "sources", true)
	jw.open(len(r.Sources) == 0)
	for i, s := range r.Sources {
		jw.sep(i > 0)
		jw.indent(d + 1)
		jw.source(s)
	}
	jw.close(d, ']', len(r.Sources) == 0)
	jw.close(d-1, '}', false)
}

func (jw *jsonWriter) source(s source.Result) {
	const d = 5
	jw.raw("{\n")
	jw.field(d, "kind", string(s.Kind), false)
	jw.field(d, "name", s.Name, true)
	jw.key(d, "addresses", true)
	jw.open(len(s.Addresses) == 0)
	var ttls map[string]int
	for i, a := range s.Addresses {
		b := jw.buf()
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		b = appendIndent(b, d+1)
		b = append(b, '"')
		// As Prefix.String writes it: the zero prefix is "invalid Prefix".
		if a.Prefix.IsValid() {
			b = a.Prefix.AppendTo(b)
		} else {
			b = append(b, "invalid Prefix"...)
		}
		b = append(b, '"')
		jw.write(b)
		if a.TTL > 0 {
			if ttls == nil {
				ttls = map[string]int{}
			}
			ttls[a.Prefix.String()] = int(a.TTL / time.Second)
		}
	}
	jw.close(d, ']', len(s.Addresses) == 0)
	if len(ttls) > 0 {
		jw.field(d, "ttl_seconds", ttls, true)
	}
	if len(s.CNAMEs) > 0 {
		jw.field(d, "cnames", s.CNAMEs, true)
	}
	if len(s.Warnings) > 0 {
		jw.field(d, "warnings", s.Warnings, true)
	}
	if s.Err != nil {
		jw.field(d, "error", oneline.Error(s.Err), true)
	}
	jw.close(d-1, '}', false)
}

// jsonWriter writes indented JSON piece by piece; the first error sticks.
type jsonWriter struct {
	w   *bufio.Writer
	err error
}

// buf is the writer's free space to append one line to; it is flushed
// first when nearly full, so appending never reallocates.
func (jw *jsonWriter) buf() []byte {
	if jw.w.Available() < 256 && jw.err == nil {
		jw.err = jw.w.Flush()
	}
	return jw.w.AvailableBuffer()
}

func (jw *jsonWriter) write(b []byte) {
	if jw.err == nil {
		_, jw.err = jw.w.Write(b)
	}
}

func (jw *jsonWriter) raw(s string) {
	if jw.err == nil {
		_, jw.err = jw.w.WriteString(s)
	}
}

func (jw *jsonWriter) sep(comma bool) {
	if comma {
		jw.raw(",\n")
	} else {
		jw.raw("\n")
	}
}

func (jw *jsonWriter) indent(depth int) {
	jw.write(appendIndent(jw.buf(), depth))
}

func appendIndent(b []byte, depth int) []byte {
	for range depth {
		b = append(b, "  "...)
	}
	return b
}

// key starts a member at depth: the comma ending the previous one, the
// indent and the quoted name.
func (jw *jsonWriter) key(depth int, name string, comma bool) {
	if comma {
		jw.raw(",\n")
	}
	jw.indent(depth)
	jw.raw(`"` + name + `": `)
}

// field writes a small member through encoding/json, indented for its
// depth, so its escaping and layout are exactly the encoder's.
func (jw *jsonWriter) field(depth int, name string, v any, comma bool) {
	jw.key(depth, name, comma)
	if jw.err != nil {
		return
	}
	b, err := json.MarshalIndent(v, strings.Repeat("  ", depth), "  ")
	if err != nil {
		jw.err = err
		return
	}
	jw.write(b)
}

// open starts an array; an empty one is written whole.
func (jw *jsonWriter) open(empty bool) {
	if empty {
		jw.raw("[]")
		return
	}
	jw.raw("[")
}

// close ends a non-empty array or object whose members sat at depth+1.
func (jw *jsonWriter) close(depth int, c byte, empty bool) {
	if empty {
		return
	}
	b := append(jw.buf(), '\n')
	b = appendIndent(b, depth)
	jw.write(append(b, c))
}

// prefixes writes a list of prefixes as MarshalText does (the zero prefix
// is ""), the members one level below depth.
func (jw *jsonWriter) prefixes(depth int, ps []netip.Prefix) {
	jw.open(len(ps) == 0)
	for i, p := range ps {
		b := jw.buf()
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		b = appendIndent(b, depth+1)
		b = append(b, '"')
		b = p.AppendTo(b)
		jw.write(append(b, '"'))
	}
	jw.close(depth, ']', len(ps) == 0)
}
