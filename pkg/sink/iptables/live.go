package iptables

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// Live keeps our chains in the running kernel.
type Live struct {
	opts    Options
	layout  layout
	name    string
	ipt     map[family][]string
	restore map[family][]string
	ipset   []string
	kernel  ipsetKernel
	log     *slog.Logger
	run     runner
	persist Persistence
	warned  atomic.Bool
	// stamp lets a run skip both -S reads while nf_tables stands still;
	// nil without a state directory or where it could not speak for them.
	stamp *stamper
}

// Persistence locates Debian's netfilter-persistent and its ipset plugin.
// Without the plugin, `netfilter-persistent save` stores rules that match
// our ipsets but not the sets, and at boot iptables-restore rejects the
// whole rules.v4: the host comes up with none of its rules.
type Persistence struct {
	Tool        string // netfilter-persistent itself
	PluginsDir  string // its plugins directory
	IPSetPlugin string // ipset-persistent's plugin
}

// DefaultPersistence is where Debian's packages install them.
func DefaultPersistence() Persistence {
	return Persistence{
		Tool:        "/usr/sbin/netfilter-persistent",
		PluginsDir:  "/usr/share/netfilter-persistent/plugins.d",
		IPSetPlugin: "/usr/share/netfilter-persistent/plugins.d/10-ipset",
	}
}

// missingIPSetPlugin is true when netfilter-persistent is installed but
// would save our rules without their ipsets.
func (p Persistence) missingIPSetPlugin() bool {
	exists := func(path string) bool {
		_, err := os.Stat(path)
		return path != "" && err == nil
	}
	return (exists(p.Tool) || exists(p.PluginsDir)) && !exists(p.IPSetPlugin)
}

// warnUnsavedIPSets warns once per sink (one per run) when our chains use
// ipsets that netfilter-persistent would not save.
func (s *Live) warnUnsavedIPSets() {
	if !s.persist.missingIPSetPlugin() || s.warned.Swap(true) {
		return
	}
	s.log.Warn("netfilter-persistent is installed without its ipset plugin: `netfilter-persistent save` would store rules that match ipsets it does not save, and at boot the whole rules.v4 is rejected; install ipset-persistent, or raise ipset_threshold so no ipsets are used",
		"sink", s.name, "missing", s.persist.IPSetPlugin)
}

// New validates options and returns the live sink.
func New(o Options, owner, origin string) (*Live, error) {
	if err := sink.CheckOptions(origin, o); err != nil {
		return nil, err
	}
	l, err := o.Chains.layout(owner, origin)
	if err != nil {
		return nil, err
	}
	l.threshold = o.IPSetThreshold
	if o.Wait < 0 {
		return nil, fmt.Errorf("%s: wait %d: want seconds >= 0", origin, o.Wait)
	}
	via := o.IPSetVia
	switch via {
	case "", "auto":
		via = "command"
		if f := strings.Fields(o.IPSet); len(f) == 0 || len(f) == 1 && f[0] == "ipset" || o.NetNS != "" {
			via = "netlink"
		}
	case "netlink", "command":
	default:
		return nil, fmt.Errorf("%s: ipset_via %q: want auto, netlink or command", origin, o.IPSetVia)
	}
	name := "iptables"
	if o.ChainIn != DefaultChainIn || o.ChainOut != DefaultChainOut {
		// Two live sinks differ only by their chains.
		name = "iptables:" + o.ChainIn + "," + o.ChainOut
	}
	s := &Live{
		opts: o, layout: l, name: name,
		ipt: map[family][]string{4: command(o.IPTables, "iptables"), 6: command(o.IP6Tables, "ip6tables")},
		restore: map[family][]string{
			4: command(o.IPTablesRestore, "iptables-restore"),
			6: command(o.IP6TablesRestore, "ip6tables-restore"),
		},
		ipset:   command(o.IPSet, "ipset"),
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		run:     runCommand,
		persist: DefaultPersistence(),
	}
	s.kernel = ipsetNetlink{nsPath: o.NetNS}
	if via == "command" {
		// Through s.run, which tests replace.
		s.kernel = ipsetCommand{argv: s.ipset,
			run: func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) { return s.run(ctx, argv, stdin) },
			log: func(msg string, args ...any) { s.log.Debug(msg, append([]any{"sink", s.name}, args...)...) }}
	}
	return s, nil
}

// Name identifies the sink in plans.
func (s *Live) Name() string { return s.name }

func (s *Live) fail(err error) error { return fmt.Errorf("%s: %w", s.name, err) }

// read lists the filter table of one family.
func (s *Live) read(ctx context.Context, fam family) (string, error) {
	argv := with(s.ipt[fam], append(waitArgs(s.opts.Wait), "-t", "filter", "-S")...)
	out, err := s.run(ctx, argv, nil)
	return string(out), err
}

// readRules returns what -S prints for each family: from the stamp while
// the ruleset stands at its generation (stamped true), else read and
// stamped.
func (s *Live) readRules(ctx context.Context, useStamp bool) (rules map[family]string, stamped bool, err error) {
	st := s.stamp
	if st != nil {
		if id, ok := st.open(); ok {
			defer st.close()
			if useStamp {
				if rules, ok := st.load(id, s.name, s.ipt); ok {
					return rules, true, nil
				}
			}
			rules, err := s.readFamilies(ctx)
			if err == nil {
				st.save(ctx, id, s.name, s.layout.chainIn, s.ipt, rules)
			}
			return rules, false, err
		}
	}
	rules, err = s.readFamilies(ctx)
	return rules, false, err
}

func (s *Live) readFamilies(ctx context.Context) (map[family]string, error) {
	rules := map[family]string{}
	for _, fam := range families {
		out, err := s.read(ctx, fam)
		if err != nil {
			return nil, err
		}
		rules[fam] = out
	}
	return rules, nil
}

// liveSnapshot is what Current read. It reaches Apply in the plan, so a
// run lists each family and each of our ipsets once.
type liveSnapshot struct {
	sink     *Live
	states   map[family]chainState
	members  map[string]setMembers
	sets     map[string]setInfo
	usesSets bool
	// used is set by the first Apply; another one reads again, as what
	// the snapshot says is then out of date.
	used atomic.Bool
}

// readAll reads both families' chains, the members of every ipset they
// use and the header of every ipset.
func (s *Live) readAll(ctx context.Context) (*liveSnapshot, error) { return s.readSnapshot(ctx, true) }

func (s *Live) readSnapshot(ctx context.Context, useStamp bool) (*liveSnapshot, error) {
	snap := &liveSnapshot{sink: s, states: map[family]chainState{}}
	rules, stamped, err := s.readRules(ctx, useStamp)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, fam := range families {
		cs, err := s.layout.parseRules(rules[fam])
		if err != nil && stamped {
			// Not what -S printed after all: read it.
			return s.readSnapshot(ctx, false)
		}
		if err != nil {
			argv := with(s.ipt[fam], append(waitArgs(s.opts.Wait), "-t", "filter", "-S")...)
			return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
		snap.states[fam] = cs
		names = append(names, referencedSets(cs.rules)...)
	}
	snap.usesSets = len(names) > 0
	own := func(name string) bool { _, _, ok := s.layout.ownSet(name); return ok }
	members, sets, err := s.kernel.read(ctx, names, own, snap.usesSets)
	if err != nil {
		return nil, err
	}
	for name, m := range members {
		// Sorted once here, the entries read from it come sorted and
		// the in-place change merges without sorting again.
		m.prefixes = sortPrefixes(m.prefixes)
		members[name] = m
	}
	snap.members = members
	snap.sets = sets
	return snap, nil
}

// Current reads our chains back, so a hand edit or flush shows as drift or
// as missing entries and the next sync repairs it. Rules outside our
// chains are never read as entries: with enforce on, an ACCEPT in INPUT
// after our jump would not let a peer through, so it covers nothing.
func (s *Live) Current(ctx context.Context) (plan.State, error) {
	snap, err := s.readAll(ctx)
	if err != nil {
		return plan.State{}, s.fail(err)
	}
	var st plan.State
	odd := map[family]int{}
	for _, fam := range families {
		entries, unlabelled, n := s.layout.entries(fam, snap.states[fam].rules, snap.members)
		odd[fam] = n
		switch {
		case len(st.Owned) == 0:
			st.Owned = entries // a million entries are not copied
		case len(entries) > 0:
			st.Owned = plan.Merge(st.Owned, entries) // both sorted
		}
		st.Unlabelled = append(st.Unlabelled, unlabelled...)
	}
	st.Unlabelled = plan.Sort(st.Unlabelled)
	if snap.usesSets {
		s.warnUnsavedIPSets()
	}
	// Drift needs both families: enforce closes a port in both.
	st.Drift = s.layout.sortedDrift(snap.states, st.Owned, odd)
	for _, fam := range families {
		for _, n := range referencedSets(snap.states[fam].rules) {
			if k := snap.members[n].odd; k > 0 {
				st.Drift = append(st.Drift, fmt.Sprintf("IPv%d: ipset %s holds %d members with options pdsafelist never sets; rewrite it", fam, n, k))
			}
		}
	}
	for _, n := range s.staleSets(snap.sets) {
		fam, temp, _ := s.layout.ownSet(n)
		if temp {
			st.Drift = append(st.Drift, fmt.Sprintf("IPv%d: stale staging ipset %s (left by an interrupted run); destroy it", fam, n))
		} else {
			st.Drift = append(st.Drift, fmt.Sprintf("IPv%d: ipset %s is ours but unused (left by an interrupted run); destroy it", fam, n))
		}
	}
	// The entries are made: the snapshot keeps the members packed.
	for n, m := range snap.members {
		snap.members[n] = m.packed()
	}
	st.Snapshot = snap
	return st, nil
}

// staleSets are our ipsets that outlived an apply, IPv4 first: temporary
// twins, which no apply leaves behind, and sets nothing references, which
// an apply killed before its commit leaves. Applies never overlap (the
// run lock), so none of them is in the middle of one.
func (s *Live) staleSets(sets map[string]setInfo) []string {
	var out []string
	for n, info := range sets {
		if _, temp, ok := s.layout.ownSet(n); ok && (temp || info.refs == 0) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		fa, _, _ := s.layout.ownSet(a)
		fb, _, _ := s.layout.ownSet(b)
		return cmp.Or(cmp.Compare(fa, fb), strings.Compare(a, b))
	})
	return out
}

func referencedSets(rules []rule) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rules {
		if r.raw == "" && r.ipset != "" && !seen[r.ipset] {
			seen[r.ipset] = true
			out = append(out, r.ipset)
		}
	}
	sort.Strings(out)
	return out
}

// famApply is one family's transaction.
type famApply struct {
	fam   family
	input []byte
	// restore is false when our chains and jumps already read as input
	// would write them: no iptables-restore runs for the family.
	restore bool
	sets    map[string]*group    // every ipset the new chains use
	staged  map[string]*group    // those filled anew and swapped in
	inPlace map[string]setChange // those changed member by member
	old     []string             // ipsets our chains used before
}

// setChange is a change made to a set in place.
type setChange struct{ add, del []netip.Prefix }

// In-place limits. One member changed in place is one netlink message
// (a few microseconds); a staged set is refilled whole, about as much
// work per member through ipset restore, so up to a quarter of the set in
// place is cheaper. Beyond maxInPlace changes the set is staged anyway:
// member by member, a big change would leave the set half old, half new
// for longer, where a swap changes it at once.
const (
	minInPlace = 16
	maxInPlace = 10000
)

// inPlace returns the members to add and delete when set name can take
// the prefixes of group g in place: it is ours in shape (hash:net of the
// family, room for them, no member with options we never write) and the
// change is small.
func inPlace(snap *liveSnapshot, fam family, name string, g *group) (setChange, bool) {
	info, ok := snap.sets[name]
	have, read := snap.members[name]
	if !ok || !read || info.typ != "hash:net" || info.family != fam || have.odd > 0 || g.n > info.maxElem {
		return setChange{}, false
	}
	limit := min(maxInPlace, max(minInPlace, g.n/4))
	// Both sorted (have when read, the group as a plan leaves it), then
	// merged: no map of a million members, no copy of the group.
	var c setChange
	i, m := 0, g.members()
	e, more := m.next()
	for i < have.len() || more {
		d := 1 // have ran out
		switch {
		case !more:
			d = -1
		case i < have.len():
			d = plan.ComparePrefix(have.at(i), e.Prefix)
		}
		switch {
		case d == 0:
			i++
			e, more = m.next()
		case d < 0:
			c.del = append(c.del, have.at(i))
			i++
		default:
			c.add = append(c.add, e.Prefix)
			e, more = m.next()
		}
		if len(c.add)+len(c.del) > limit {
			return setChange{}, false
		}
	}
	return c, true
}

// Apply rewrites our chains to hold exactly the entries the plan leaves.
// A family whose chains already read as they would be written gets no
// iptables-restore, and its ipsets take a small change in place (adds
// first, so nothing allowed is ever missing). Otherwise large groups go
// into ipsets that are filled under a temporary name and swapped in, then
// one iptables-restore --noflush per family, validated first with --test,
// replaces our chains and repairs our jumps. A failure leaves each
// family's previous chains with their previous ipsets.
func (s *Live) Apply(ctx context.Context, p plan.SinkPlan) error {
	// The plan's Keep and Add as they are: one address added to a
	// hundred thousand makes no merged copy of them.
	runs := p.Runs()
	for _, es := range runs {
		if err := checkEntries(es); err != nil {
			return s.fail(err)
		}
	}
	snap, ok := p.Snapshot.(*liveSnapshot)
	if !ok || snap == nil || snap.sink != s || snap.used.Swap(true) {
		var err error
		if snap, err = s.readAll(ctx); err != nil {
			return s.fail(err)
		}
	}
	var txs []famApply
	var closing []closer
	for _, es := range runs {
		closing = append(closing, closers(es)...)
	}
	slices.SortFunc(closing, compareClosers)
	closing = slices.Compact(closing)
	for _, fam := range families {
		cs := snap.states[fam]
		rules, sets := s.layout.rulesOf(fam, groupsOf(fam, runs), closing)
		var jumps []string
		for _, h := range s.layout.hooks() {
			jumps = append(jumps, s.layout.jumpLines(h[0], h[1], cs.jumps[h[0]])...)
		}
		tx := famApply{fam: fam, input: s.layout.restore("", rules, jumps), sets: sets, old: referencedSets(cs.rules),
			staged: map[string]*group{}, inPlace: map[string]setChange{}}
		tx.restore = !cs.exists[s.layout.chainIn] || !cs.exists[s.layout.chainOut] || len(jumps) > 0 || !sameRules(rules, cs.rules)
		for name, g := range sets {
			if c, ok := inPlace(snap, fam, name, g); ok && !tx.restore {
				tx.inPlace[name] = c
			} else {
				tx.staged[name] = g
			}
		}
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		if len(tx.sets) > 0 {
			s.warnUnsavedIPSets()
		}
	}
	staged, err := s.stage(ctx, txs, snap.sets)
	if err != nil {
		return s.fail(fmt.Errorf("staging ipsets, previous chains kept: %w", err))
	}
	for _, tx := range txs {
		if !tx.restore {
			continue
		}
		argv := with(s.restore[tx.fam], append(waitArgs(s.opts.Wait), "--test", "--noflush")...)
		if _, err := s.run(ctx, argv, tx.input); err != nil {
			staged.abort(ctx, families)
			return s.fail(fmt.Errorf("rejected, previous chains kept: %w", err))
		}
	}
	for _, tx := range txs {
		for _, name := range slices.Sorted(maps.Keys(tx.inPlace)) {
			c := tx.inPlace[name]
			if err := s.kernel.change(ctx, name, c.add, c.del); err != nil {
				// Chains are untouched; the set is part way, and the
				// next run finishes it.
				staged.abort(ctx, families)
				return s.fail(fmt.Errorf("ipset %s changed in part, chains kept: %w", name, err))
			}
		}
	}
	// The staged sets go in before the commit, so the new chains never
	// match a set that is empty or still holds the old members. The old
	// members wait in the temporary sets until their family's commit has
	// succeeded: if it fails, they are swapped back, and the old chains
	// keep their old members. (Committing first and swapping after would
	// leave the new chains matching stale or empty sets for a moment;
	// with enforce, that drops PagerDuty.)
	if err := staged.swap(ctx, families); err != nil {
		// Which sets were swapped is unknown: the temporary sets stay,
		// and the next run reports them and starts over.
		return s.fail(fmt.Errorf("ipset swap, previous chains kept: %w", err))
	}
	for i, tx := range txs {
		if !tx.restore {
			continue
		}
		argv := with(s.restore[tx.fam], append(waitArgs(s.opts.Wait), "--noflush")...)
		if _, err := s.run(ctx, argv, tx.input); err != nil {
			// The transaction is all or nothing; an earlier family may
			// already be done, and a re-run finishes the job.
			var rest []family
			for _, t := range txs[i:] {
				rest = append(rest, t.fam)
			}
			if serr := staged.swap(ctx, rest); serr != nil {
				return s.fail(fmt.Errorf("rejected, previous IPv%d chains kept: %w; putting their ipsets back failed too, the next run repairs them: %v", tx.fam, err, serr))
			}
			staged.abort(ctx, rest)
			staged.finish(ctx)
			return s.fail(fmt.Errorf("rejected, previous IPv%d chains kept: %w", tx.fam, err))
		}
	}
	staged.finish(ctx)
	s.dropStale(ctx, txs)
	return nil
}

// staging is ipsets filled under temporary names, not yet in use.
type staging struct {
	s *Live
	// names are the final names per family, each with its temporary twin.
	names map[family][]string
	// created are final names made empty for this apply, so --test can
	// see them; they go again if the apply is abandoned.
	created map[family][]string
	// done are families whose temporary sets are gone.
	done map[family]bool
}

// stage destroys temporary ipsets left by a killed run, then fills a
// temporary ipset for every set to be staged. sets is every ipset the
// kernel held when read.
func (s *Live) stage(ctx context.Context, txs []famApply, sets map[string]setInfo) (*staging, error) {
	st := &staging{s: s, names: map[family][]string{}, created: map[family][]string{}, done: map[family]bool{}}
	existing := maps.Clone(sets)
	wanted := map[string]bool{}
	for _, tx := range txs {
		for n := range tx.sets {
			wanted[n] = true
		}
	}
	var steps []ipsetStep
	unused := map[string]bool{}
	for _, n := range s.staleSets(existing) {
		if _, temp, _ := s.layout.ownSet(n); temp || !wanted[n] {
			steps = append(steps, ipsetStep{op: opDestroy, name: n})
			delete(existing, n)
		} else {
			unused[n] = true
		}
	}
	for _, tx := range txs {
		for _, name := range slices.Sorted(maps.Keys(tx.staged)) {
			g := tx.staged[name]
			create := ipsetStep{op: opCreate, name: tempSetName(name), fam: tx.fam, hashSize: hashSize(g.n), maxElem: maxElem(g.n)}
			steps = append(steps, create, ipsetStep{op: opAdd, name: create.name, members: g})
			if _, ok := existing[name]; !ok {
				create.name = name
				steps = append(steps, create)
				st.created[tx.fam] = append(st.created[tx.fam], name)
			} else if unused[name] {
				// Unused, so it can go like one made now.
				st.created[tx.fam] = append(st.created[tx.fam], name)
			}
			st.names[tx.fam] = append(st.names[tx.fam], name)
		}
	}
	if err := s.kernel.script(ctx, steps); err != nil {
		st.abort(ctx, families)
		return nil, err
	}
	return st, nil
}

// swap exchanges each staged set of the families with its temporary twin,
// set by set: the first time it puts the new members in, the second time
// it puts the old ones back.
func (st *staging) swap(ctx context.Context, fams []family) error {
	var steps []ipsetStep
	for _, fam := range fams {
		for _, n := range st.names[fam] {
			steps = append(steps, ipsetStep{op: opSwap, name: tempSetName(n), with: n})
		}
	}
	return st.s.kernel.script(ctx, steps)
}

// finish destroys the temporary sets that are left, in one script.
// A failure leaves unused sets, which the next run reports and destroys.
func (st *staging) finish(ctx context.Context) {
	var steps []ipsetStep
	for _, fam := range families {
		if !st.done[fam] {
			for _, n := range st.names[fam] {
				steps = append(steps, ipsetStep{op: opDestroy, name: tempSetName(n)})
			}
		}
		st.done[fam] = true
	}
	if err := st.s.kernel.script(ctx, steps); err != nil {
		st.s.log.Warn("temporary ipsets left behind", "sink", st.s.name, "err", err)
	}
}

// abort removes what staging made for the families, their sets not being
// in use; best effort, as the apply has already failed for a reason worth
// reporting.
func (st *staging) abort(ctx context.Context, fams []family) {
	for _, fam := range fams {
		for _, n := range st.names[fam] {
			_ = st.s.kernel.destroy(ctx, tempSetName(n))
		}
		for _, n := range st.created[fam] {
			_ = st.s.kernel.destroy(ctx, n)
		}
		st.done[fam] = true
	}
}

// dropStale destroys ipsets our chains no longer use. A failure only
// leaves an unused set behind, so it is logged, not returned.
func (s *Live) dropStale(ctx context.Context, txs []famApply) {
	inUse := map[string]bool{}
	for _, tx := range txs {
		for n := range tx.sets {
			inUse[n] = true
		}
	}
	for _, tx := range txs {
		for _, n := range tx.old {
			if inUse[n] {
				continue
			}
			if err := s.kernel.destroy(ctx, n); err != nil {
				s.log.Warn("unused ipset left behind", "sink", s.name, "set", n, "err", err)
			}
		}
	}
}

// hashSize starts a set at about four members a bucket (the kernel grows
// it when a bucket fills). A bucket a member made dumping 100,000 members
// cost the kernel twice the CPU, and every run dumps them.
func hashSize(n int) int {
	h := 1024
	for h < n/4 {
		h *= 2
	}
	return h
}

// maxElem leaves room to grow, so a set twice today's size still fits.
func maxElem(n int) int {
	m := 65536
	for m < 2*n {
		m *= 2
	}
	return m
}
