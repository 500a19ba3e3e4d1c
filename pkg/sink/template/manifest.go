package template

import (
	"bytes"
	"fmt"
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

func (s *Sink) render(entries []plan.Entry) ([]byte, error) {
	entries = plan.Sort(entries)
	d := s.data(entries)
	if s.comment == "" {
		return s.renderJSON(d)
	}
	var b bytes.Buffer
	c := s.comment + " "
	b.WriteString(c + headerText + "\n")
	owner := s.owner
	if owner == "" {
		owner = "-"
	}
	b.WriteString(c + ownerTag + owner + "\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "%s%s%s %s %s %d %s\n", c, entryTag, e.Set, e.Direction, e.Protocol, e.Port, e.Prefix)
	}
	b.WriteString(c + endTag + "\n")
	if err := s.tmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("%s: template: %s", s.Name(), oneline.Error(err))
	}
	return b.Bytes(), nil
}

// parseManifest reads the entries back. An entry whose set is not a set
// name (a label edited by hand) is returned unlabelled, for the plan to
// give to a routed set; anything else malformed refuses the file.
func (s *Sink) parseManifest(data []byte) (owned, unlabelled []plan.Entry, err error) {
	if s.comment == "" {
		return s.parseJSON(data)
	}
	c := s.comment + " "
	lines := strings.Split(string(data), "\n")
	if lines[0] != c+headerText {
		return nil, nil, fmt.Errorf("not written by pdsafelist (first line is not its header); refusing to overwrite")
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], c+ownerTag) {
		return nil, nil, fmt.Errorf("line 2: no owner line; refusing to overwrite")
	}
	owner := s.owner
	if owner == "" {
		owner = "-"
	}
	if got := strings.TrimPrefix(lines[1], c+ownerTag); got != owner {
		return nil, nil, fmt.Errorf("written by pdsafelist owner %q, this run is owner %q; refusing to overwrite", got, owner)
	}
	var out []plan.Entry
	for i, l := range lines[2:] {
		if l == c+endTag {
			owned, unlabelled = splitUnlabelled(out)
			return owned, unlabelled, nil
		}
		rest, ok := strings.CutPrefix(l, c+entryTag)
		if !ok {
			return nil, nil, fmt.Errorf("line %d: not a manifest entry; refusing to overwrite", i+3)
		}
		e, err := parseEntry(rest)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w; refusing to overwrite", i+3, err)
		}
		out = append(out, e)
	}
	return nil, nil, fmt.Errorf("manifest has no end line; refusing to overwrite")
}

// splitUnlabelled sets apart the entries whose set is not a set name,
// with the set cleared: the label is unreadable, the entry is still ours.
func splitUnlabelled(es []plan.Entry) (owned, unlabelled []plan.Entry) {
	for _, e := range es {
		if plan.ValidSetName(e.Set) {
			owned = append(owned, e)
		} else {
			e.Set = ""
			unlabelled = append(unlabelled, e)
		}
	}
	return plan.Sort(owned), plan.Sort(unlabelled)
}

// parseEntry reads "SET DIRECTION PROTOCOL PORT PREFIX".
func parseEntry(s string) (plan.Entry, error) {
	f := strings.Split(s, " ")
	if len(f) != 5 {
		return plan.Entry{}, fmt.Errorf("entry %q: want set, direction, protocol, port and prefix", s)
	}
	dir, err := plan.ParseDirection(f[1])
	if err != nil || dir.String() != f[1] {
		return plan.Entry{}, fmt.Errorf("entry %q: direction %q", s, f[1])
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil {
		return plan.Entry{}, fmt.Errorf("entry %q: port %q", s, f[3])
	}
	p, err := netip.ParsePrefix(f[4])
	if err != nil {
		return plan.Entry{}, fmt.Errorf("entry %q: prefix %q", s, f[4])
	}
	proto, err := plan.ParseProtocol(f[2])
	if err != nil {
		return plan.Entry{}, fmt.Errorf("entry %q: %w", s, err)
	}
	e := plan.Entry{Set: f[0], Direction: dir, Protocol: proto, Port: uint16(port), Prefix: p}
	if err := checkEntry(e); err != nil {
		return plan.Entry{}, err
	}
	return e, nil
}
