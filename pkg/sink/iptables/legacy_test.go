package iptables

import (
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// Hosts on the legacy (x_tables) backend get the same behaviour: enforce
// with real traffic, a quiet re-run, and a repaired hand flush.
func TestLiveLegacyBackend(t *testing.T) {
	integration(t)
	testutil.Integration(t, true, "iptables-legacy", "ip6tables-legacy", "iptables-legacy-restore", "ip6tables-legacy-restore")
	p := netns.New(t, client4a, client4b, client6a, client6b)
	p.Serve(t, 8443)
	p.Serve(t, 9443)
	s := liveIn(t, p.Server, func(o *Options) {
		in := "ip netns exec " + p.Server + " "
		o.IPTables, o.IP6Tables = in+"iptables-legacy", in+"ip6tables-legacy"
		o.IPTablesRestore, o.IP6TablesRestore = in+"iptables-legacy-restore", in+"ip6tables-legacy-restore"
		o.Enforce = "ingress"
	})
	if first := cycle(t, s, webhooks(8443, 9443)); len(first.Add) != 3 {
		t.Fatalf("first plan adds %d entries, want 3", len(first.Add))
	}
	expectReach(t, p, []reach{
		{client4a, 8443, true}, {client4b, 8443, false},
		{client6a, 8443, true}, {client6b, 8443, false},
		{client6a, 9443, false},
	})
	if again := cycle(t, s, webhooks(8443, 9443)); again.HasChanges() {
		t.Fatalf("second run has changes: add %v remove %v drift %v", again.Add, again.Remove, again.Drift)
	}
	// The rules really live in the legacy tables, not in nf_tables.
	if out := sh(t, p, "iptables-legacy-save", "-t", "filter"); !strings.Contains(out, "pdsafelist:webhooks") {
		t.Fatalf("legacy tables lack our rules:\n%s", out)
	}
	sh(t, p, "iptables-legacy", "-F", "PDSAFELIST-IN")
	if repair := cycle(t, s, webhooks(8443, 9443)); !repair.HasChanges() {
		t.Fatal("a hand flush of the legacy chain was not seen")
	}
	expectReach(t, p, []reach{{client4a, 8443, true}, {client4b, 8443, false}})
}
