package k8snetpol

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

// wholeObject is everything the server holds for the object, metadata
// included, for before/after comparisons.
func wholeObject(t testing.TB, k *kubeTarget) string {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		return "absent"
	}
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A policy another tool creates between our read and our write is refused
// untouched: the first write is a create, not a forced apply that would
// merge into it.
func testCreateRace(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	s := k.open(t)
	ctx := context.Background()
	st, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := sets(pfx("54.1.1.1/32"), pfx("193.0.2.10/32"))
	p := sinktest.Plan(t, step(s, d), d, st)
	k.replaceForeign(t)
	before := wholeObject(t, k)
	err = s.Apply(ctx, p)
	if err == nil {
		t.Fatal("apply over a policy created since the read succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, k.ns+"/"+policyName) || !strings.Contains(msg, "someone else") {
		t.Errorf("refusal %q: want one line naming %s/%s and saying someone else made it", msg, k.ns, policyName)
	}
	if after := wholeObject(t, k); after != before {
		t.Errorf("the foreign policy changed:\nbefore %s\nafter  %s", before, after)
	}
}

// managers lists the managed-fields entries as "manager/operation".
func managers(obj *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, m := range obj.ManagedFields {
		out = append(out, m.Manager+"/"+string(m.Operation))
	}
	return out
}

// After the first write every field belongs to our apply manager, so a
// later apply removes what it no longer sends: a whole direction, not
// only an ipBlock of an atomic list. A run with nothing to do sends
// nothing.
func testFirstWrite(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	d := sets(pfx("54.1.1.1/32", "54.1.1.2/32"), pfx("193.0.2.10/32"))
	sinktest.MustSync(t, step(k.open(t), d), d)
	obj := k.get(t)
	if got, want := managers(obj), []string{FieldManager + "/Apply"}; !slices.Equal(got, want) {
		t.Errorf("managers after the first write %v, want %v", got, want)
	}
	checkShrinks(t, k)
}

// checkShrinks drops 54.1.1.2 and the whole ingress set from a policy
// that holds both, and checks the server removed exactly them.
func checkShrinks(t *testing.T, k *kubeTarget) {
	t.Helper()
	d := sets(pfx("54.1.1.1/32"), nil)
	p := sinktest.MustSync(t, step(k.open(t), d), d)
	if len(p.Remove) != 2 {
		t.Errorf("plan removes %v, want 54.1.1.2 and 193.0.2.10", p.Remove)
	}
	obj := k.get(t)
	if got, want := blocks(obj), []string{"egress 54.1.1.1/32"}; !slices.Equal(got, want) {
		t.Errorf("ipBlocks after the shrink %v, want %v", got, want)
	}
	if obj.Spec.Ingress != nil || !slices.Equal(obj.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}) {
		t.Errorf("ingress %v policyTypes %v after the ingress set went", obj.Spec.Ingress, obj.Spec.PolicyTypes)
	}
	w, rv := k.api.Count(), obj.ResourceVersion
	if p := sinktest.MustSync(t, step(k.open(t), d), d); p.HasChanges() {
		t.Errorf("re-run plans add %v remove %v drift %q", p.Add, p.Remove, p.Drift)
	}
	if k.api.Count() != w || k.get(t).ResourceVersion != rv {
		t.Errorf("re-run wrote: %d writes, resourceVersion %s -> %s", k.api.Count()-w, rv, k.get(t).ResourceVersion)
	}
}

// A first write cut short after its create leaves fields with the Update
// manager; the next apply hands them over first, so removal still works.
func testFirstWriteCutShort(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	k.api.failPatch = types.JSONPatchType
	d := sets(pfx("54.1.1.1/32", "54.1.1.2/32"), pfx("193.0.2.10/32"))
	_, err := sinktest.Sync(context.Background(), step(k.open(t), d), d)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "next run retries") {
		t.Fatalf("first write with its upgrade failing: %v", err)
	}
	if got, want := managers(k.get(t)), []string{FieldManager + "/Update"}; !slices.Equal(got, want) {
		t.Fatalf("managers after the cut-short write %v, want %v", got, want)
	}
	checkShrinks(t, k)
	if got, want := managers(k.get(t)), []string{FieldManager + "/Apply"}; !slices.Equal(got, want) {
		t.Errorf("managers after the next apply %v, want %v", got, want)
	}
}

// The largest policy the guard passes is written by the real server; one
// entry more is refused by the guard before any write, naming the sink and
// the count, and the server itself would have refused it.
func testSizeGuard(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	s := k.open(t)
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	planN := func(n int) (plan.SinkPlan, []plan.DesiredSet) {
		d := sets(kubetest.Spread(n), nil)
		return sinktest.Plan(t, step(s, d), d, st), d
	}
	passes := func(n int) bool { p, _ := planN(n); return s.Check(p) == nil }
	lo := kubetest.Largest(t, 1000, passes)
	hi := lo + 1
	t.Logf("the guard passes %d entries and refuses %d", lo, hi)
	p, _ := planN(hi)
	err = s.Check(p)
	var ge *plan.GuardError
	if !errors.As(err, &ge) || ge.Guard != plan.GuardKubeObjectSize || !strings.Contains(err.Error(), s.Name()) || !strings.Contains(err.Error(), strconv.Itoa(hi)+" entries") {
		t.Errorf("refusal of %d entries: %v", hi, err)
	}
	// Past the guard, the server refuses the same write.
	if err := s.Apply(context.Background(), p); err == nil || !strings.Contains(err.Error(), "annotations") {
		t.Errorf("the server took %d entries the guard refuses: %v", hi, err)
	}
	if k.get(t) != nil {
		t.Fatal("a refused write left a policy")
	}
	_, d := planN(hi)
	if _, err := sinktest.Sync(context.Background(), step(k.open(t), d), d); !errors.As(err, &ge) {
		t.Errorf("sync of %d entries: %v, want the guard's refusal", hi, err)
	}
	if k.get(t) != nil || k.api.Count() != 0 {
		t.Fatal("the guard's refusal wrote")
	}
	_, d = planN(lo)
	sinktest.MustSync(t, step(k.open(t), d), d)
	if got := len(blocks(k.get(t))); got != lo {
		t.Errorf("the policy holds %d ipBlocks, want %d", got, lo)
	}
}
