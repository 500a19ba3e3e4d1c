package iptables

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// setInfo is the header of one ipset: what decides whether a change can
// go into it in place.
type setInfo struct {
	// refs counts the kernel rules that use the set; -1 is unknown.
	refs    int
	typ     string // "hash:net"
	family  family // 0: neither inet nor inet6
	maxElem int
	// size is how many members the kernel says the set holds; a hint
	// only.
	size int
}

// setMembers is what one of our ipsets holds.
type setMembers struct {
	prefixes []netip.Prefix
	// v4 is the members instead of prefixes once packed: sorted IPv4
	// members as 40-bit keys (address, then length), 8 bytes a member
	// instead of 32.
	v4 []uint64
	// odd counts members with options we never write (nomatch, a
	// timeout, a comment): they do not read back as entries, and the set
	// is rewritten.
	odd int
}

// packed is m, its sorted members packed when all are IPv4: what a
// snapshot keeps to the end of the run for the apply's comparison, once
// the entries are made (a million members are 32 MB unpacked, 8 packed).
func (m setMembers) packed() setMembers {
	if len(m.prefixes) == 0 || m.v4 != nil || !all4(m.prefixes) {
		return m
	}
	v4 := make([]uint64, len(m.prefixes))
	for i, p := range m.prefixes {
		v4[i] = key4(p)
	}
	return setMembers{v4: v4, odd: m.odd}
}

func (m setMembers) len() int {
	if m.v4 != nil {
		return len(m.v4)
	}
	return len(m.prefixes)
}

// at is the i-th member, in order.
func (m setMembers) at(i int) netip.Prefix {
	if m.v4 == nil {
		return m.prefixes[i]
	}
	return prefix4(m.v4[i])
}

// ipsetKernel reads and changes ipsets: through netlink, or through the
// ipset command where the user gave one.
type ipsetKernel interface {
	// read reads the members of each set in names, then lists every
	// ipset, with the header of those in names and of those own says
	// are ours; with need false, a missing ipset tool or module means
	// there are none.
	read(ctx context.Context, names []string, own func(string) bool, need bool) (map[string]setMembers, map[string]setInfo, error)
	// change adds then deletes members in place; adding one already there
	// or deleting one that is gone is not an error.
	change(ctx context.Context, name string, add, del []netip.Prefix) error
	// script runs the steps in order, as one ipset restore runs its
	// lines, and stops at the first that fails.
	script(ctx context.Context, steps []ipsetStep) error
	// destroy destroys one set.
	destroy(ctx context.Context, name string) error
}

// ipsetStep is one step of staging, one line of an ipset restore script.
type ipsetStep struct {
	op   ipsetOp
	name string
	// with is the set name is swapped with.
	with string
	// create: a hash:net set of fam with these sizes.
	fam               family
	hashSize, maxElem int
	// add: the prefixes of the group's family.
	members *group
}

type ipsetOp int

const (
	opDestroy ipsetOp = iota
	opCreate
	opAdd
	opSwap
)

// ipsetCommand runs the ipset tool.
type ipsetCommand struct {
	argv []string
	run  func(ctx context.Context, argv []string, stdin []byte) ([]byte, error)
	log  func(msg string, args ...any)
}

func (c ipsetCommand) read(ctx context.Context, names []string, _ func(string) bool, need bool) (map[string]setMembers, map[string]setInfo, error) {
	members := make(map[string]setMembers, len(names))
	for _, name := range names {
		m, err := c.members(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		members[name] = m
	}
	sets, err := c.sets(ctx, need)
	return members, sets, err
}

func (c ipsetCommand) members(ctx context.Context, name string) (setMembers, error) {
	text, err := c.run(ctx, with(c.argv, "save", name), nil)
	if err != nil {
		return setMembers{}, err
	}
	var m setMembers
	for l := range strings.Lines(string(text)) {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "add" || f[1] != name {
			continue
		}
		p, err := parsePrefix(f[2])
		if err != nil {
			return setMembers{}, fmt.Errorf("ipset %s: member %q: %w", name, f[2], err)
		}
		if len(f) > 3 {
			m.odd++
			continue
		}
		m.prefixes = append(m.prefixes, p)
	}
	return m, nil
}

func (c ipsetCommand) change(ctx context.Context, name string, add, del []netip.Prefix) error {
	var script strings.Builder
	for _, p := range add {
		fmt.Fprintf(&script, "add -exist %s %s\n", name, p)
	}
	for _, p := range del {
		fmt.Fprintf(&script, "del -exist %s %s\n", name, p)
	}
	if script.Len() == 0 {
		return nil
	}
	_, err := c.run(ctx, with(c.argv, "restore"), []byte(script.String()))
	return err
}

// script renders the steps as an ipset restore script, made once at
// about its size (a million members are some 40 MB of it), and runs it.
func (c ipsetCommand) script(ctx context.Context, steps []ipsetStep) error {
	if len(steps) == 0 {
		return nil
	}
	size := 0
	for _, st := range steps {
		size += 64 + len(st.name) + len(st.with)
		if st.members != nil {
			size += st.members.n * (len(st.name) + 28)
		}
	}
	script := bytes.NewBuffer(make([]byte, 0, size+4096))
	for _, st := range steps {
		switch st.op {
		case opDestroy:
			fmt.Fprintf(script, "destroy %s\n", st.name)
		case opCreate:
			fmt.Fprintf(script, "create %s hash:net family %s hashsize %d maxelem %d\n", st.name, st.fam.ipsetFamily(), st.hashSize, st.maxElem)
		case opSwap:
			fmt.Fprintf(script, "swap %s %s\n", st.name, st.with)
		case opAdd:
			var line []byte
			for m := st.members.members(); ; {
				e, ok := m.next()
				if !ok {
					break
				}
				line = append(append(append(line[:0], "add "...), st.name...), ' ')
				line = append(e.Prefix.AppendTo(line), '\n')
				script.Write(line)
			}
		}
	}
	_, err := c.run(ctx, with(c.argv, "restore"), script.Bytes())
	return err
}

func (c ipsetCommand) destroy(ctx context.Context, name string) error {
	_, err := c.run(ctx, with(c.argv, "destroy", name), nil)
	return err
}

// sets parses `ipset list -t`.
func (c ipsetCommand) sets(ctx context.Context, need bool) (map[string]setInfo, error) {
	out, err := c.run(ctx, with(c.argv, "list", "-t"), nil)
	if err != nil {
		if need {
			return nil, err
		}
		c.log("ipsets not listed", "err", err)
		return map[string]setInfo{}, nil
	}
	m := map[string]setInfo{}
	name := ""
	for l := range strings.Lines(string(out)) {
		l = strings.TrimRight(l, "\n")
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		if k != "Name" && name == "" && (k == "References" || k == "Type" || k == "Header") {
			return nil, fmt.Errorf("ipset list -t: unexpected line %q", l)
		}
		info := m[name]
		switch k {
		case "Name":
			name = v
			info = setInfo{refs: -1} // unknown: never taken for unused
		case "Type":
			info.typ = v
		case "Header":
			f := strings.Fields(v)
			for i := 0; i+1 < len(f); i += 2 {
				switch f[i] {
				case "family":
					info.family = map[string]family{"inet": 4, "inet6": 6}[f[i+1]]
				case "maxelem":
					info.maxElem, _ = strconv.Atoi(f[i+1])
				}
			}
		case "References":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("ipset list -t: unexpected line %q", l)
			}
			info.refs = n
		default:
			continue
		}
		m[name] = info
	}
	return m, nil
}
