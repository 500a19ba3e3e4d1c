package template

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// The manifest heads every file but JSON ones, each line behind the
// format's comment marker:
//
//	# pdsafelist: generated file; every sync rewrites it, do not edit.
//	# pdsafelist:owner prod
//	# pdsafelist:entry webhooks ingress tcp 443 44.242.69.192/32
//	# pdsafelist:end
//
// Only this exact first line proves the file is ours.
const (
	headerText = "pdsafelist: generated file; every sync rewrites it, do not edit."
	ownerTag   = "pdsafelist:owner "
	entryTag   = "pdsafelist:entry "
	endTag     = "pdsafelist:end"
)

// renderTo writes the file to w: the manifest, then the body. It writes
// as it goes, so neither a sync nor a comparison holds the whole file.
// runs are the entries in plan order, in parts (plan.SinkPlan.Runs): a
// line format walks them as they are, and only a template's data joins
// them.
func (s *Sink) renderTo(w io.Writer, runs [][]plan.Entry) error {
	lf, lines := lineFormats[s.opts.Format]
	lines = lines && s.opts.Template == ""
	var d Data
	if !lines {
		d = s.data(join(runs))
	}
	if s.comment == "" {
		return s.renderJSON(w, d)
	}
	b := bufio.NewWriterSize(w, 64<<10)
	c := s.comment + " "
	b.WriteString(c + headerText + "\n")
	owner := s.owner
	if owner == "" {
		owner = "-"
	}
	b.WriteString(c + ownerTag + owner + "\n")
	var line []byte
	for e := range all(runs) {
		line = append(line[:0], c...)
		line = append(line, entryTag...)
		line = append(line, e.Set...)
		line = append(line, ' ')
		line = append(line, e.Direction.String()...)
		line = append(line, ' ')
		line = append(line, e.Protocol.String()...)
		line = append(line, ' ')
		line = strconv.AppendUint(line, uint64(e.Port), 10)
		line = append(line, ' ')
		line = e.Prefix.AppendTo(line)
		line = append(line, '\n')
		b.Write(line)
	}
	b.WriteString(c + endTag + "\n")
	if lines {
		// A built-in format of one line per prefix, written directly:
		// text/template boxes and prints each of a million prefixes, and
		// the prefixes are merged as they are written, never held.
		eachAggregated(runs, func(p netip.Prefix) {
			line = p.AppendTo(append(line[:0], lf.before...))
			b.Write(append(line, lf.after...))
		})
		return b.Flush()
	}
	if err := s.tmpl.Execute(b, d); err != nil {
		// A failed write stops the template too; it is the cause.
		if werr := b.Flush(); werr != nil {
			return werr
		}
		return fmt.Errorf("%s: template: %s", s.Name(), oneline.Error(err))
	}
	return b.Flush()
}

// lineFormats are the built-in formats whose template writes each prefix
// on a line between two fixed strings; TestLineFormatsMatchTheirTemplates
// holds them to their templates.
var lineFormats = map[string]struct{ before, after string }{
	"nginx":   {"allow ", ";\n"},
	"haproxy": {"", "\n"},
	"plain":   {"", "\n"},
}

// renders reports whether entries render to exactly what r holds,
// comparing as the render goes: neither the file nor its render is ever
// held whole.
func (s *Sink) renders(entries []plan.Entry, r io.Reader) (bool, error) {
	c := &comparer{r: bufio.NewReaderSize(r, 64<<10)}
	if err := s.renderTo(c, [][]plan.Entry{plan.Sort(entries)}); err != nil && !errors.Is(err, errDiffers) {
		return false, err
	}
	if c.differs {
		return false, nil
	}
	// Nothing may follow what the render wrote.
	_, err := c.r.ReadByte()
	return errors.Is(err, io.EOF), nil
}

// errDiffers stops a render whose output already differs.
var errDiffers = errors.New("differs")

// comparer is a writer that compares what it is given with what it reads.
type comparer struct {
	r       *bufio.Reader
	buf     []byte
	differs bool
}

func (c *comparer) Write(p []byte) (int, error) {
	for off := 0; off < len(p) && !c.differs; {
		n := min(len(p)-off, 64<<10)
		if cap(c.buf) < n {
			c.buf = make([]byte, 64<<10)
		}
		got := c.buf[:n]
		if _, err := io.ReadFull(c.r, got); err != nil || !bytes.Equal(got, p[off:off+n]) {
			c.differs = true
		}
		off += n
	}
	if c.differs {
		return 0, errDiffers
	}
	return len(p), nil
}

// maxLine bounds one manifest line; a longer one is not ours.
const maxLine = 64 << 10

// lineScanner reads r a line at a time. Lines end at '\n' only: a '\r'
// stays part of its line, as it is part of what the render compares.
func lineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	return sc
}

// parseManifest reads the entries back from r, a line at a time. An entry
// whose set is not a set name (a label edited by hand) is returned
// unlabelled, for the plan to give to a routed set; anything else
// malformed refuses the file.
func (s *Sink) parseManifest(r io.ReadSeeker) (owned, unlabelled []plan.Entry, err error) {
	if s.comment == "" {
		return s.parseJSON(r)
	}
	c := s.comment + " "
	// A first pass counts the entry lines, so the entries are made once
	// at their size: grown by appending, a million of them would cost
	// five times their 56 MB.
	count := 0
	sc := lineScanner(r)
	for sc.Scan() && !bytes.Equal(sc.Bytes(), []byte(c+endTag)) {
		if bytes.HasPrefix(sc.Bytes(), []byte(c+entryTag)) {
			count++
		}
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	sc = lineScanner(r)
	n := 0
	next := func() (string, bool) {
		n++
		if !sc.Scan() {
			return "", false
		}
		return sc.Text(), true
	}
	if l, _ := next(); l != c+headerText {
		return nil, nil, fmt.Errorf("not written by pdsafelist (first line is not its header); refusing to overwrite")
	}
	l, ok := next()
	if !ok || !strings.HasPrefix(l, c+ownerTag) {
		return nil, nil, fmt.Errorf("line 2: no owner line; refusing to overwrite")
	}
	owner := s.owner
	if owner == "" {
		owner = "-"
	}
	if got := strings.TrimPrefix(l, c+ownerTag); got != owner {
		return nil, nil, fmt.Errorf("written by pdsafelist owner %q, this run is owner %q; refusing to overwrite", got, owner)
	}
	out := make([]plan.Entry, 0, count)
	// Set names are a handful; each entry shares its set's one string
	// rather than keeping its line alive. Lines are read as the scanner
	// holds them: a million are never made strings.
	names := map[string]string{}
	entry, end := []byte(c+entryTag), []byte(c+endTag)
	for sc.Scan() {
		n++
		l := sc.Bytes()
		if bytes.Equal(l, end) {
			owned, unlabelled = splitUnlabelled(out)
			return owned, unlabelled, nil
		}
		rest, ok := bytes.CutPrefix(l, entry)
		if !ok {
			return nil, nil, fmt.Errorf("line %d: not a manifest entry; refusing to overwrite", n)
		}
		e, err := parseEntry(rest, names)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w; refusing to overwrite", n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("line %d: %s; refusing to overwrite", n+1, oneline.Error(err))
	}
	return nil, nil, fmt.Errorf("manifest has no end line; refusing to overwrite")
}

// splitUnlabelled sets apart the entries whose set is not a set name,
// with the set cleared: the label is unreadable, the entry is still ours.
func splitUnlabelled(es []plan.Entry) (owned, unlabelled []plan.Entry) {
	// In place: the owned entries move down over the ones taken out.
	owned = es[:0]
	for _, e := range es {
		if plan.ValidSetName(e.Set) {
			owned = append(owned, e)
		} else {
			e.Set = ""
			unlabelled = append(unlabelled, e)
		}
	}
	if len(owned) == 0 {
		owned = nil
	}
	return plan.Sort(owned), plan.Sort(unlabelled)
}

// parseEntry reads "SET DIRECTION PROTOCOL PORT PREFIX" without making
// a string of it: names holds the set names seen, each entry shares its
// set's string.
func parseEntry(b []byte, names map[string]string) (plan.Entry, error) {
	// Cut, not Split: a million lines, no slice of fields each.
	if bytes.Count(b, []byte(" ")) != 4 {
		return plan.Entry{}, fmt.Errorf("entry %q: want set, direction, protocol, port and prefix", b)
	}
	var f [5][]byte
	rest := b
	for i := range 4 {
		f[i], rest, _ = bytes.Cut(rest, []byte(" "))
	}
	f[4] = rest
	var e plan.Entry
	switch string(f[1]) {
	case plan.Ingress.String():
		e.Direction = plan.Ingress
	case plan.Egress.String():
		e.Direction = plan.Egress
	default:
		return plan.Entry{}, fmt.Errorf("entry %q: direction %q", b, f[1])
	}
	port, ok := parsePort(f[3])
	if !ok {
		return plan.Entry{}, fmt.Errorf("entry %q: port %q", b, f[3])
	}
	e.Port = port
	p, ok := parseIPv4Prefix(f[4])
	if !ok {
		var err error
		if p, err = netip.ParsePrefix(string(f[4])); err != nil {
			return plan.Entry{}, fmt.Errorf("entry %q: prefix %q", b, f[4])
		}
	}
	e.Prefix = p
	switch string(f[2]) {
	case plan.TCP.String():
		e.Protocol = plan.TCP
	case plan.UDP.String():
		e.Protocol = plan.UDP
	default:
		_, err := plan.ParseProtocol(string(f[2]))
		return plan.Entry{}, fmt.Errorf("entry %q: %w", b, err)
	}
	set, seen := names[string(f[0])]
	if !seen {
		set = string(f[0])
		if len(names) < 4096 {
			names[set] = set
		}
	}
	e.Set = set
	if err := checkEntry(e); err != nil {
		return plan.Entry{}, err
	}
	return e, nil
}

// parsePort reads a port as strconv.ParseUint(s, 10, 16) does.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n = n*10 + int(c-'0'); n > 65535 {
			return 0, false
		}
	}
	return uint16(n), true
}

// parseIPv4Prefix reads the common "A.B.C.D/N" as netip.ParsePrefix
// does, without a string made of it. It takes only what is surely valid
// (no leading zeros, octets to 255, N to 32); anything else, IPv6
// included, is left to netip (FuzzParseIPv4Prefix holds the two equal).
func parseIPv4Prefix(b []byte) (netip.Prefix, bool) {
	var a [4]byte
	i := 0
	for k := range 4 {
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if i == start || v > 255 || i-start > 1 && b[start] == '0' {
			return netip.Prefix{}, false
		}
		a[k] = byte(v)
		sep := byte('.')
		if k == 3 {
			sep = '/'
		}
		if i >= len(b) || b[i] != sep {
			return netip.Prefix{}, false
		}
		i++
	}
	bits, ok := parsePort(b[i:])
	if !ok || bits > 32 || len(b)-i > 1 && b[i] == '0' {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom4(a), int(bits)), true
}
