package ec2_test

import (
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// Issue 26: a group allows the sets through prefix lists it fills itself
// (prefix_lists=NAME). The option used to be refused as unknown.
func TestCLIGroupPrefixLists(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	c := newCLI(t, "193.0.2.10", "193.0.2.20", "2001:db9::10")
	sinkFlag := "--sink=ec2:" + sg + "?endpoint=" + f.URL + "&prefix_lists=pd-hooks&max_entries=10&rule_limit=60"
	code, out, errOut := c.run(sinkFlag, "--dry-run", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, "Plan: 3 to add, 0 to remove.") {
		t.Fatalf("dry run: code %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := c.run(sinkFlag); code != 0 {
		t.Fatalf("sync: code %d\n%s%s", code, out, errOut)
	}
	id, ok := f.ListByName("pd-hooks")
	if !ok {
		t.Fatal("no list pd-hooks")
	}
	l, _ := f.List(id)
	if len(l.Entries) != 2 || l.MaxEntries != 10 || l.Tags["pdsafelist"] != "managed" {
		t.Errorf("list %+v", l)
	}
	var refs, v6 int
	for _, r := range f.Rules(sg) {
		switch {
		case r.PrefixList == id && r.FromPort == 443 && !r.Egress && r.Description == "pdsafelist:prefix_lists":
			refs++
		case r.CIDR == "2001:db9::10/128" && r.Description == "pdsafelist:hooks":
			v6++
		default:
			t.Errorf("unexpected rule %+v", r)
		}
	}
	if refs != 1 || v6 != 1 {
		t.Errorf("%d references and %d IPv6 rules, want 1 and 1: %+v", refs, v6, f.Rules(sg))
	}
	f.ResetCalls()
	if code, out, _ := c.run(sinkFlag, "--detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("second sync: code %d\n%s", code, out)
	}
	for action := range f.Calls() {
		if ec2fake.Mutating(action) {
			t.Errorf("second sync called %s", action)
		}
	}
}

// The reference-count pre-check: a reference counts as its list's
// MaxEntries, so a list of 100 does not fit a group of rule_limit 60; the
// refusal is exit 3 naming the counts, and nothing is written.
func TestCLIGroupPrefixListsRuleLimitExit3(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	c := newCLI(t, "193.0.2.10")
	for _, extra := range [][]string{{"--dry-run"}, nil} {
		args := append([]string{"--sink", "ec2:" + sg + "?endpoint=" + f.URL + "&prefix_lists=pd-hooks&max_entries=100"}, extra...)
		code, out, errOut := c.run(args...)
		want := "the group would hold 100 ingress IPv4 rules (100 ours: 1 references to the prefix lists pd-hooks counting 100 as their MaxEntries, 0 per CIDR, 0 other references; 0 others), more than rule_limit 60"
		if code != 3 || !strings.Contains(errOut, "refused by ec2-rule-limit guard") || !strings.Contains(errOut, want) {
			t.Errorf("%v: code %d\n%s%s", extra, code, out, errOut)
		}
	}
	if n := len(f.Rules(sg)); n != 0 {
		t.Errorf("refused plan changed the group: %d rules", n)
	}
	if _, ok := f.ListByName("pd-hooks"); ok {
		t.Error("refused plan created a list")
	}
}
