package nftables

import (
	"context"
	"strings"
	"testing"
)

// Turning on enforce shows as the drop rule it adds, not only as "file
// content differs"; turning it off shows the rule it removes.
func TestEnforceDriftNamesTheRules(t *testing.T) {
	off := newSink(t, Options{Enforce: "none"})
	sync(t, off, desired())
	on := newSink(t, Options{Path: off.opts.Path, Enforce: "ingress"})
	st, err := on.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	drop := `chain ingress: tcp dport { 443, 8443 } drop comment "pdsafelist:enforce"`
	if d := strings.Join(st.Drift, "\n"); !strings.Contains(d, "adds rule(s): "+drop) || strings.Contains(d, "removes") {
		t.Errorf("drift %q: want it to name the added rule %s", d, drop)
	}
	sync(t, on, desired())
	st, err = off.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := strings.Join(st.Drift, "\n"); !strings.Contains(d, "removes rule(s): "+drop) || strings.Contains(d, "adds") {
		t.Errorf("drift %q: want it to name the removed rule", d)
	}
}
