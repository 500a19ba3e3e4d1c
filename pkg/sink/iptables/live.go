package iptables

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// Live keeps our chains in the running kernel.
type Live struct {
	opts    Options
	layout  layout
	name    string
	ipt     map[family][]string
	restore map[family][]string
	ipset   []string
	log     *slog.Logger
	run     runner
}

// New validates options and returns the live sink.
func New(o Options, owner, origin string) (*Live, error) {
	l, err := o.Chains.layout(owner, origin)
	if err != nil {
		return nil, err
	}
	l.threshold = o.IPSetThreshold
	if o.Wait < 0 {
		return nil, fmt.Errorf("%s: wait %d: want seconds >= 0", origin, o.Wait)
	}
	name := "iptables"
	if o.ChainIn != DefaultChainIn || o.ChainOut != DefaultChainOut {
		// Two live sinks differ only by their chains.
		name = "iptables:" + o.ChainIn + "," + o.ChainOut
	}
	return &Live{
		opts: o, layout: l, name: name,
		ipt: map[family][]string{4: command(o.IPTables, "iptables"), 6: command(o.IP6Tables, "ip6tables")},
		restore: map[family][]string{
			4: command(o.IPTablesRestore, "iptables-restore"),
			6: command(o.IP6TablesRestore, "ip6tables-restore"),
		},
		ipset: command(o.IPSet, "ipset"),
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		run:   runCommand,
	}, nil
}

// Name identifies the sink in plans.
func (s *Live) Name() string { return s.name }

func (s *Live) fail(err error) error { return fmt.Errorf("%s: %w", s.name, err) }

// read lists the filter table of one family and keeps what is ours.
func (s *Live) read(ctx context.Context, fam family) (chainState, error) {
	argv := with(s.ipt[fam], append(waitArgs(s.opts.Wait), "-t", "filter", "-S")...)
	out, err := s.run(ctx, argv, nil)
	if err != nil {
		return chainState{}, err
	}
	cs, err := s.layout.parseRules(string(out))
	if err != nil {
		return chainState{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return cs, nil
}

// Current reads our chains back, so a hand edit or flush shows as drift or
// as missing entries and the next sync repairs it. Rules outside our
// chains are never read as entries: with enforce on, an ACCEPT in INPUT
// after our jump would not let a peer through, so it covers nothing.
func (s *Live) Current(ctx context.Context) (plan.State, error) {
	var st plan.State
	states := map[family]chainState{}
	odd := map[family]int{}
	for _, fam := range families {
		cs, err := s.read(ctx, fam)
		if err != nil {
			return plan.State{}, s.fail(err)
		}
		members, err := s.members(ctx, cs.rules)
		if err != nil {
			return plan.State{}, s.fail(err)
		}
		var entries []plan.Entry
		entries, odd[fam] = s.layout.entries(fam, cs.rules, members)
		st.Owned = append(st.Owned, entries...)
		states[fam] = cs
	}
	st.Owned = plan.Sort(st.Owned)
	// Drift needs both families: enforce closes a port in both.
	for _, fam := range families {
		st.Drift = append(st.Drift, s.layout.drift(fam, states[fam], st.Owned, odd[fam])...)
	}
	return st, nil
}

// members reads the content of every ipset our rules match against.
func (s *Live) members(ctx context.Context, rules []rule) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	for _, name := range referencedSets(rules) {
		text, err := s.run(ctx, with(s.ipset, "save", name), nil)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(text), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "add" || f[1] != name {
				continue
			}
			p, err := parsePrefix(f[2])
			if err != nil {
				return nil, fmt.Errorf("ipset %s: member %q: %w", name, f[2], err)
			}
			out[name] = append(out[name], p)
		}
	}
	return out, nil
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
	sets  map[string][]netip.Prefix
	old   []string // ipsets our chains used before
}

// Apply rewrites our chains to hold exactly the entries the plan leaves:
// large groups go into ipsets that are filled under a temporary name and
// swapped in, then one iptables-restore --noflush per family, validated
// first with --test, replaces our chains and adds a missing jump. A
// failure before the restore leaves the previous chains in place.
func (s *Live) Apply(ctx context.Context, p plan.SinkPlan) error {
	entries := p.Result()
	var txs []famApply
	for _, fam := range families {
		cs, err := s.read(ctx, fam)
		if err != nil {
			return s.fail(err)
		}
		rules, sets := s.layout.chainRules(fam, entries)
		var jumps []string
		for _, h := range s.layout.hooks() {
			// With jump off, our own earlier jumps go: the user hooks the
			// chains, and a second path in would be a surprise.
			keep := 0
			if s.layout.jump {
				keep = 1
				if len(cs.jumps[h[0]]) == 0 {
					jumps = append(jumps, s.layout.insertJump(h[0], h[1]))
				}
			}
			jumps = append(jumps, deleteJumps(h[0], cs.jumps[h[0]], keep)...)
		}
		txs = append(txs, famApply{fam: fam, input: s.layout.restore("", rules, jumps), sets: sets, old: referencedSets(cs.rules)})
	}
	staged, err := s.stage(ctx, txs)
	if err != nil {
		return s.fail(err)
	}
	for _, tx := range txs {
		argv := with(s.restore[tx.fam], append(waitArgs(s.opts.Wait), "--test", "--noflush")...)
		if _, err := s.run(ctx, argv, tx.input); err != nil {
			staged.abort(ctx)
			return s.fail(fmt.Errorf("rejected, previous chains kept: %w", err))
		}
	}
	if err := staged.swap(ctx); err != nil {
		staged.abort(ctx)
		return s.fail(err)
	}
	for _, tx := range txs {
		argv := with(s.restore[tx.fam], append(waitArgs(s.opts.Wait), "--noflush")...)
		if _, err := s.run(ctx, argv, tx.input); err != nil {
			// The transaction is all or nothing; an earlier family may
			// already be done, and a re-run finishes the job.
			return s.fail(fmt.Errorf("rejected, previous IPv%d chains kept: %w", tx.fam, err))
		}
	}
	s.dropStale(ctx, txs)
	return nil
}

// staging is ipsets filled under temporary names, not yet in use.
type staging struct {
	s *Live
	// names are the final names, each with its temporary twin.
	names []string
	// created are final names made empty for this apply, so --test can
	// see them; they go again if the apply is abandoned.
	created []string
}

// stage fills a temporary ipset for every set the new chains use.
func (s *Live) stage(ctx context.Context, txs []famApply) (*staging, error) {
	st := &staging{s: s}
	var script strings.Builder
	var existing map[string]bool
	for _, tx := range txs {
		if len(tx.sets) == 0 {
			continue
		}
		if existing == nil {
			var err error
			if existing, err = s.listSets(ctx); err != nil {
				return nil, err
			}
		}
		names := slices.Sorted(maps.Keys(tx.sets))
		for _, name := range names {
			prefixes := tx.sets[name]
			tmp := tempSetName(name)
			if existing[tmp] {
				// Left by an interrupted run; its size may not fit.
				fmt.Fprintf(&script, "destroy %s\n", tmp)
			}
			create := fmt.Sprintf("hash:net family %s hashsize %d maxelem %d", tx.fam.ipsetFamily(), hashSize(len(prefixes)), maxElem(len(prefixes)))
			fmt.Fprintf(&script, "create %s %s\n", tmp, create)
			for _, p := range prefixes {
				fmt.Fprintf(&script, "add %s %s\n", tmp, p)
			}
			if !existing[name] {
				fmt.Fprintf(&script, "create %s %s\n", name, create)
				st.created = append(st.created, name)
			}
			st.names = append(st.names, name)
		}
	}
	if len(st.names) == 0 {
		return st, nil
	}
	if _, err := s.run(ctx, with(s.ipset, "restore"), []byte(script.String())); err != nil {
		st.abort(ctx)
		return nil, err
	}
	return st, nil
}

// swap puts every staged set in place atomically, set by set.
func (st *staging) swap(ctx context.Context) error {
	if len(st.names) == 0 {
		return nil
	}
	var script strings.Builder
	for _, n := range st.names {
		fmt.Fprintf(&script, "swap %s %s\ndestroy %s\n", tempSetName(n), n, tempSetName(n))
	}
	_, err := st.s.run(ctx, with(st.s.ipset, "restore"), []byte(script.String()))
	return err
}

// abort removes what staging made; best effort, as the apply has already
// failed for a reason worth reporting.
func (st *staging) abort(ctx context.Context) {
	for _, n := range st.names {
		_, _ = st.s.run(ctx, with(st.s.ipset, "destroy", tempSetName(n)), nil)
	}
	for _, n := range st.created {
		_, _ = st.s.run(ctx, with(st.s.ipset, "destroy", n), nil)
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
			if _, err := s.run(ctx, with(s.ipset, "destroy", n), nil); err != nil {
				s.log.Warn("unused ipset left behind", "sink", s.name, "set", n, "err", err)
			}
		}
	}
}

func (s *Live) listSets(ctx context.Context) (map[string]bool, error) {
	out, err := s.run(ctx, with(s.ipset, "list", "-n"), nil)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		m[l] = true
	}
	return m, nil
}

func hashSize(n int) int {
	h := 1024
	for h < n {
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
