package kubecidr

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// sets: events egress on 443, webhooks ingress on 443 and 8443; the
// object keeps neither port nor direction.
func sets(events, webhooks []netip.Prefix) []plan.DesiredSet {
	return []plan.DesiredSet{
		{Name: "events", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: events},
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443, 8443}, Prefixes: webhooks},
	}
}

func step(s sink.Sink) sink.Step {
	return sink.Step{Sink: s, Limits: plan.DefaultLimits, Known: []string{"events", "webhooks"}, Guards: plan.DefaultRunGuards}
}

// A first sync writes the sets' CIDRs once each, both families, with the
// labels option and the record; a second plans nothing, sends nothing and
// leaves the resourceVersion as it was.
func testRerun(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	d := sets(pfx("54.1.1.1/32", "2001:db9::5/128", "193.0.2.10/32"), pfx("193.0.2.10/32"))
	sinktest.MustSync(t, step(k.open(t)), d)
	obj := k.get(t)
	if obj == nil {
		t.Fatal("no object after the first sync")
	}
	if got, want := k.cidrs(t), []string{"54.1.1.1/32", "193.0.2.10/32", "2001:db9::5/128"}; !slices.Equal(got, want) {
		t.Errorf("%v holds %v, want %v", kind.Field, got, want)
	}
	if l := obj.GetLabels(); l[kubeobj.ManagedByLabel] != kubeobj.ManagedBy || l["pdsafelist.io/list"] != "pagerduty" || len(l) != 2 {
		t.Errorf("labels %v", l)
	}
	var rec map[string][]string
	if err := json.Unmarshal([]byte(obj.GetAnnotations()[kubeobj.SetsAnnot]), &rec); err != nil || len(rec["events"])+len(rec["webhooks"]) != 3 {
		t.Errorf("record %q: %v", obj.GetAnnotations()[kubeobj.SetsAnnot], err)
	}
	w := k.api.Count()
	if p := sinktest.MustSync(t, step(k.open(t)), d); p.HasChanges() {
		t.Errorf("the second run plans add %v remove %v drift %q", p.Add, p.Remove, p.Drift)
	}
	if n := k.api.Count() - w; n != 0 {
		t.Errorf("the second run made %d writes", n)
	}
	if rv := k.get(t).GetResourceVersion(); rv != obj.GetResourceVersion() {
		t.Errorf("resourceVersion %s after the second run, was %s", rv, obj.GetResourceVersion())
	}
	// Emptied: the list stays, empty (Cilium's schema requires it).
	sinktest.MustSync(t, step(k.open(t)), sets(nil, nil))
	if got := k.cidrs(t); len(got) != 0 {
		t.Errorf("emptied object holds %v", got)
	}
}

// A shrink removes exactly the retired prefix, also after the first write
// (the created object's fields belong to the apply manager).
func testShrink(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	d := sets(pfx("54.1.1.1/32", "54.1.1.2/32"), pfx("193.0.2.10/32"))
	sinktest.MustSync(t, step(k.open(t)), d)
	var mgrs []string
	for _, m := range k.get(t).GetManagedFields() {
		mgrs = append(mgrs, m.Manager+"/"+string(m.Operation))
	}
	if want := []string{kubeobj.FieldManager + "/Apply"}; !slices.Equal(mgrs, want) {
		t.Errorf("managers after the first write %v, want %v", mgrs, want)
	}
	d = sets(pfx("54.1.1.1/32"), pfx("193.0.2.10/32"))
	p := sinktest.MustSync(t, step(k.open(t)), d)
	if len(p.Add) != 0 || len(p.Remove) != 1 || p.Remove[0].Prefix != netip.MustParsePrefix("54.1.1.2/32") {
		t.Errorf("plan add %v remove %v; want 54.1.1.2/32 removed only", p.Add, p.Remove)
	}
	if got, want := k.cidrs(t), []string{"54.1.1.1/32", "193.0.2.10/32"}; !slices.Equal(got, want) {
		t.Errorf("after the shrink %v, want %v", got, want)
	}
	// The labels option dropped: the label goes too.
	s, err := New(kind, k.api, Options{Name: k.name}, "test", sink.Env{OwnerID: "sinktest"})
	if err != nil {
		t.Fatal(err)
	}
	sinktest.MustSync(t, step(s), d)
	if l := k.get(t).GetLabels(); len(l) != 1 {
		t.Errorf("labels after the option was dropped: %v", l)
	}
}

// An object of the name that we did not make is refused with one line
// naming it, and left as it was.
func testForeign(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	k.replaceForeign(t)
	before := whole(t, k)
	d := sets(pfx("54.1.1.1/32"), nil)
	_, err := sinktest.Sync(context.Background(), step(k.open(t)), d)
	if err == nil {
		t.Fatal("sync over a foreign object succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, kind.Kind+" "+k.name) {
		t.Errorf("refusal %q: want one line naming %s %s", msg, kind.Kind, k.name)
	}
	if after := whole(t, k); after != before || k.api.Count() != 0 {
		t.Errorf("the foreign object changed (%d writes):\nbefore %s\nafter  %s", k.api.Count(), before, after)
	}
}

func whole(t testing.TB, k *kubeTarget) string {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		return "absent"
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// An object another tool creates between our read and our write is
// refused untouched.
func testCreateRace(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	s := k.open(t)
	ctx := context.Background()
	st, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := sets(pfx("54.1.1.1/32"), nil)
	p := sinktest.Plan(t, step(s), d, st)
	k.replaceForeign(t)
	before := whole(t, k)
	err = s.Apply(ctx, p)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "someone else") {
		t.Errorf("apply over an object made since the read: %v", err)
	}
	if after := whole(t, k); after != before {
		t.Errorf("the foreign object changed:\nbefore %s\nafter  %s", before, after)
	}
}

// An object changed between our read and our write is not overwritten:
// the apply carries the resourceVersion read.
func testChangedSinceRead(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	d := sets(pfx("54.1.1.1/32"), nil)
	sinktest.MustSync(t, step(k.open(t)), d)
	s := k.open(t)
	ctx := context.Background()
	st, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d = sets(pfx("54.1.1.1/32", "54.1.1.2/32"), nil)
	p := sinktest.Plan(t, step(s), d, st)
	k.edit(t, func(obj *unstructured.Unstructured) {
		l := obj.GetLabels()
		l["edited"] = "by-hand"
		obj.SetLabels(l)
	})
	before := whole(t, k)
	if err := s.Apply(ctx, p); err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "changed since it was read") {
		t.Errorf("apply over an object changed since the read: %v", err)
	}
	if after := whole(t, k); after != before {
		t.Errorf("the object changed:\nbefore %s\nafter  %s", before, after)
	}
}

// The largest object the guard passes is written by the real server; one
// prefix more is refused by the guard before any write, naming the sink
// and the count, and the server itself would have refused it.
func testSizeGuard(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	s := k.open(t)
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	planN := func(n int) plan.SinkPlan { return sinktest.Plan(t, step(s), sets(kubetest.Spread(n), nil), st) }
	passes := func(n int) bool { return s.Check(planN(n)) == nil }
	lo := kubetest.Largest(t, 1000, passes)
	hi := lo + 1
	t.Logf("the guard passes %d prefixes and refuses %d", lo, hi)
	err = s.Check(planN(hi))
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardKubeObjectSize || !strings.Contains(err.Error(), s.Name()) || !strings.Contains(err.Error(), strconv.Itoa(hi)+" entries") {
		t.Errorf("refusal of %d prefixes: %v", hi, err)
	}
	if err := s.Apply(context.Background(), planN(hi)); err == nil || !strings.Contains(err.Error(), "annotations") {
		t.Errorf("the server took %d prefixes the guard refuses: %v", hi, err)
	}
	if _, err := sinktest.Sync(context.Background(), step(k.open(t)), sets(kubetest.Spread(hi), nil)); !errors.As(err, &ge) {
		t.Errorf("sync of %d prefixes: %v, want the guard's refusal", hi, err)
	}
	if k.get(t) != nil || k.api.Count() != 0 {
		t.Fatal("a refused write left an object")
	}
	sinktest.MustSync(t, step(k.open(t)), sets(kubetest.Spread(lo), nil))
	if got := len(k.cidrs(t)); got != lo {
		t.Errorf("the object holds %d CIDRs, want %d", got, lo)
	}
}

// The factory finds the cluster through kubeconfig= and takes labels=;
// a bad option is refused at open, a missing kubeconfig at the first read.
func testFactory(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	reg := sink.Registry{kind.Type: kind.Factory("help")}
	spec, err := reg.ParseFlag(kind.Type + ":" + k.name + "?labels=role=pagerduty,tier=hooks&kubeconfig=" + e.c.Kubeconfig(t, kubetest.Admin))
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{OwnerID: "factory"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != kind.Type+":"+k.name {
		t.Errorf("name %q", s.Name())
	}
	d := sets(pfx("54.1.1.1/32"), nil)
	sinktest.MustSync(t, step(s), d)
	obj := k.get(t)
	if obj == nil || obj.GetLabels()["role"] != "pagerduty" || obj.GetLabels()["tier"] != "hooks" || obj.GetAnnotations()[kubeobj.OwnerAnnot] != "factory" {
		t.Fatalf("object %v", obj)
	}
	spec, err = reg.ParseFlag(kind.Type + ":" + k.name + "?kubeconfig=/nonexistent/kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	if s, err = reg.Open(spec, sink.Env{}); err != nil {
		t.Fatalf("open with a missing kubeconfig: %v", err)
	}
	if _, err := s.Current(context.Background()); err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Errorf("read with a missing kubeconfig: %v", err)
	}
	for _, bad := range []string{
		kind.Type + ":Not_A_Name",
		kind.Type + ":" + k.name + "?labels=app",
		kind.Type + ":" + k.name + "?labels=app.kubernetes.io/managed-by=me",
		kind.Type + ":" + k.name + "?selector=app=web",
	} {
		spec, err := reg.ParseFlag(bad)
		if err == nil {
			_, err = reg.Open(spec, sink.Env{})
		}
		if err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
