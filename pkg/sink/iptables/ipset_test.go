package iptables

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

var initval = regexp.MustCompile(` initval 0x[0-9a-f]+`)

// ipsets is `ipset save` with its lines sorted; keep filters by name.
// With random, the random hash seed of each set is left out.
func ipsets(t testing.TB, p *netns.Pair, keep func(name string) bool, random bool) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(sh(t, p, "ipset", "save"), "\n") {
		if !random {
			l = initval.ReplaceAllString(l, "")
		}
		if f := strings.Fields(l); len(f) > 1 && (keep == nil || keep(f[1])) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func setNames(t testing.TB, p *netns.Pair) []string {
	t.Helper()
	names := strings.Fields(sh(t, p, "ipset", "list", "-n"))
	slices.Sort(names)
	return names
}

// hooks443 is one ingress set on 8443 whose IPv4 and IPv6 groups both go
// into ipsets at threshold 1.
func hooks443(v4, v6 []string, ports ...uint16) []plan.DesiredSet {
	if len(ports) == 0 {
		ports = []uint16{8443}
	}
	return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: ports,
		Prefixes: pfx(append(slices.Clone(v4), v6...)...)}}
}

// Item 9 of issue 12: a run killed between the ipset restore that fills
// the staging sets and the swap leaves "NAME-n" sets nothing removed (and
// one killed before its commit, a set no rule uses). The next run shows
// them as drift and destroys them; sets that are not ours stay.
func TestLiveStaleStagingIPSetsCleaned(t *testing.T) {
	integration(t)
	p := netns.New(t, client4a)
	s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress"; o.IPSetThreshold = 1 })
	d := hooks443([]string{"193.0.2.10/32", "193.0.2.11/32"}, []string{"2001:db9::10/128", "2001:db9::11/128"})
	cycle(t, s, d)
	inUse := setNames(t, p)
	if len(inUse) != 2 {
		t.Fatalf("ipsets %v; want one per family", inUse)
	}
	contents := ipsets(t, p, nil, false)

	key := plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 8443}
	stale4 := tempSetName(ipsetName("PDSAFELIST-IN", key, 4))
	stale6 := tempSetName(ipsetName("PDSAFELIST-OUT", plan.Entry{Set: "api", Protocol: plan.UDP, Port: 53}, 6))
	// A set made for chains whose commit never came (killed before it).
	unused := ipsetName("PDSAFELIST-IN", plan.Entry{Set: "webhooks", Protocol: plan.TCP, Port: 9443}, 4)
	foreign := []string{"backup-n", tempSetName(ipsetName("OTHER-IN", key, 4)), ipsetName("OTHER-IN", key, 6)}
	sh(t, p, "ipset", "create", unused, "hash:net", "family", "inet")
	sh(t, p, "ipset", "create", stale4, "hash:net", "family", "inet")
	sh(t, p, "ipset", "add", stale4, "44.0.0.0/8")
	sh(t, p, "ipset", "create", stale6, "hash:net", "family", "inet6")
	for _, n := range foreign {
		sh(t, p, "ipset", "create", n, "hash:net")
	}

	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"IPv4: stale staging ipset " + stale4 + " (left by an interrupted run); destroy it",
		"IPv4: ipset " + unused + " is ours but unused (left by an interrupted run); destroy it",
		"IPv6: stale staging ipset " + stale6 + " (left by an interrupted run); destroy it",
	}
	if diff := cmp.Diff(want, st.Drift); diff != "" {
		t.Fatalf("drift (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(d[0].Entries(), st.Owned, cmpPrefix); diff != "" {
		t.Errorf("owned (-want +got):\n%s", diff)
	}
	cycle(t, s, d)
	wantSets := append(slices.Clone(inUse), foreign...)
	slices.Sort(wantSets)
	if diff := cmp.Diff(wantSets, setNames(t, p)); diff != "" {
		t.Errorf("ipsets after the sync (-want +got):\n%s", diff)
	}
	ours := func(n string) bool { return slices.Contains(inUse, n) }
	if got := ipsets(t, p, ours, false); got != contents {
		t.Errorf("our ipsets changed (-before +after):\n%s", cmp.Diff(contents, got))
	}
	if st, err := s.Current(context.Background()); err != nil || len(st.Drift) != 0 {
		t.Errorf("after the sync: drift %q, err %v", st.Drift, err)
	}
}

// Item 9 of issue 12: when iptables-restore accepts --test but the commit
// fails, the old chains must keep the old ipset contents: no new members
// under old rules, no staging set and no set made for the new chains left.
func TestLiveFailedCommitKeepsIPSets(t *testing.T) {
	integration(t)
	for _, failing := range families {
		t.Run("IPv"+string(rune('0'+failing)), func(t *testing.T) {
			t.Parallel()
			p := netns.New(t, client4a)
			s := liveIn(t, p.Server, func(o *Options) { o.Enforce = "ingress"; o.IPSetThreshold = 1 })
			cycle(t, s, hooks443([]string{"193.0.2.10/32", "193.0.2.11/32"}, []string{"2001:db9::10/128", "2001:db9::11/128"}))
			before := map[family]string{4: saveOne(t, p, "iptables-save"), 6: saveOne(t, p, "ip6tables-save")}
			beforeSets := ipsets(t, p, nil, true)

			// New members in both families, and a new port whose sets
			// do not exist yet.
			d := hooks443([]string{"193.0.2.10/32", "193.0.2.12/32"}, []string{"2001:db9::10/128", "2001:db9::12/128"}, 8443, 9443)
			restore := map[family]string{4: "iptables-restore", 6: "ip6tables-restore"}[failing]
			real := s.run
			s.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
				if slices.Contains(argv, restore) && !slices.Contains(argv, "--test") {
					stdin = []byte(strings.Replace(string(stdin), "COMMIT\n", "-A PDSAFELIST-IN -j NO-SUCH-CHAIN\nCOMMIT\n", 1))
				}
				return real(ctx, argv, stdin)
			}
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, d, st)); err == nil {
				t.Fatal("Apply succeeded; the injected commit failure did not happen")
			}
			famOf := func(n string) family {
				if strings.HasSuffix(n, "-6") {
					return 6
				}
				return 4
			}
			failed := func(n string) bool { return famOf(n) >= failing }
			if got := ipsets(t, p, failed, true); got != filterLines(beforeSets, failed) {
				t.Errorf("ipsets of the failed family changed (-before +after):\n%s", cmp.Diff(filterLines(beforeSets, failed), got))
			}
			for _, n := range setNames(t, p) {
				if strings.HasSuffix(n, "-n") || (failed(n) && !strings.Contains(beforeSets, "create "+n+" ")) {
					t.Errorf("ipset %s left behind", n)
				}
			}
			for _, fam := range families {
				if fam < failing {
					continue
				}
				cmd := map[family]string{4: "iptables-save", 6: "ip6tables-save"}[fam]
				if got := saveOne(t, p, cmd); got != before[fam] {
					t.Errorf("IPv%d chains changed (-before +after):\n%s", fam, cmp.Diff(before[fam], got))
				}
			}

			// The next run converges.
			s.run = real
			cycle(t, s, d)
			st, err = s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var want []plan.Entry
			for _, ds := range d {
				want = append(want, ds.Entries()...)
			}
			if diff := cmp.Diff(plan.Sort(want), st.Owned, cmpPrefix); diff != "" || len(st.Drift) != 0 {
				t.Errorf("after the next run (-want +got):\n%s\ndrift %q", diff, st.Drift)
			}
		})
	}
}

// filterLines keeps the lines of sorted `ipset save` output whose set
// passes keep.
func filterLines(text string, keep func(string) bool) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) > 1 && keep(f[1]) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// saveOne is one family's filter table without comments or counters.
func saveOne(t testing.TB, p *netns.Pair, cmd string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(sh(t, p, cmd, "-t", "filter"), "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(counters.ReplaceAllString(l, "") + "\n")
		}
	}
	return b.String()
}
