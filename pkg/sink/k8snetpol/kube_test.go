package k8snetpol

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
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

func sets(events, webhooks []netip.Prefix) []plan.DesiredSet {
	return []plan.DesiredSet{
		{Name: "events", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: events},
		{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: webhooks},
	}
}

func step(s sink.Sink, d []plan.DesiredSet) sink.Step {
	return sink.Step{Sink: s, Limits: plan.DefaultLimits, Known: []string{"events", "webhooks"}, Guards: plan.DefaultRunGuards}
}

// blocks lists the ipBlocks of each direction as "egress 1.2.3.4/32".
func blocks(obj *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, r := range obj.Spec.Ingress {
		for _, p := range r.From {
			out = append(out, "ingress "+p.IPBlock.CIDR)
		}
	}
	for _, r := range obj.Spec.Egress {
		for _, p := range r.To {
			out = append(out, "egress "+p.IPBlock.CIDR)
		}
	}
	slices.Sort(out)
	return out
}

// A second run plans nothing, sends nothing and leaves the object's
// resourceVersion as it was; the object has the template's shape.
func testRerun(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	d := sets(pfx("54.1.1.1/32", "2001:db9::5/128"), pfx("193.0.2.10/32"))
	sinktest.MustSync(t, step(k.open(t), d), d)
	obj := k.get(t)
	if obj == nil {
		t.Fatal("no NetworkPolicy after the first sync")
	}
	if obj.Labels[ManagedByLabel] != ManagedBy || obj.Annotations[OwnerAnnot] != "sinktest" {
		t.Errorf("labels %v annotations %v", obj.Labels, obj.Annotations)
	}
	if got := obj.Spec.PolicyTypes; !slices.Equal(got, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes %v", got)
	}
	if want := []string{"egress 2001:db9::5/128", "egress 54.1.1.1/32", "ingress 193.0.2.10/32"}; !slices.Equal(blocks(obj), want) {
		t.Errorf("ipBlocks %v, want %v", blocks(obj), want)
	}
	if p := obj.Spec.Egress[0].Ports; len(p) != 1 || *p[0].Protocol != "TCP" || p[0].Port.IntValue() != 443 {
		t.Errorf("egress ports %v", p)
	}
	if len(obj.Spec.PodSelector.MatchLabels)+len(obj.Spec.PodSelector.MatchExpressions) != 0 {
		t.Errorf("pod selector %v, want every pod", obj.Spec.PodSelector)
	}
	w := k.api.Count()
	if p := sinktest.MustSync(t, step(k.open(t), d), d); p.HasChanges() {
		t.Errorf("the second run plans add %v remove %v drift %q", p.Add, p.Remove, p.Drift)
	}
	if n := k.api.Count() - w; n != 0 {
		t.Errorf("the second run made %d writes", n)
	}
	if rv := k.get(t).ResourceVersion; rv != obj.ResourceVersion {
		t.Errorf("resourceVersion %s after the second run, was %s", rv, obj.ResourceVersion)
	}
	// Everything dropped: a policy that selects no pod, not one that
	// isolates every pod.
	sinktest.MustSync(t, step(k.open(t), nil), sets(nil, nil))
	obj = k.get(t)
	if len(blocks(obj)) != 0 || len(obj.Spec.PodSelector.MatchExpressions) != 1 || obj.Spec.PodSelector.MatchExpressions[0].Key != noEntriesKey {
		t.Errorf("emptied policy: %+v", obj.Spec)
	}
}

// A shrink removes exactly the retired prefix from the object.
func testShrink(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	d := sets(pfx("54.1.1.1/32", "54.1.1.2/32"), pfx("193.0.2.10/32"))
	sinktest.MustSync(t, step(k.open(t), d), d)
	d = sets(pfx("54.1.1.1/32"), pfx("193.0.2.10/32"))
	p := sinktest.MustSync(t, step(k.open(t), d), d)
	if len(p.Add) != 0 || len(p.Remove) != 1 || p.Remove[0].Prefix != netip.MustParsePrefix("54.1.1.2/32") {
		t.Errorf("plan add %v remove %v; want 54.1.1.2/32 removed only", p.Add, p.Remove)
	}
	if got, want := blocks(k.get(t)), []string{"egress 54.1.1.1/32", "ingress 193.0.2.10/32"}; !slices.Equal(got, want) {
		t.Errorf("ipBlocks after the shrink %v, want %v", got, want)
	}
}

// An object of the name that we did not make is refused with one line
// naming it, and left as it was.
func testForeign(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	k.replaceForeign(t)
	before := k.get(t)
	d := sets(pfx("54.1.1.1/32"), nil)
	_, err := sinktest.Sync(context.Background(), step(k.open(t), d), d)
	if err == nil {
		t.Fatal("sync over a foreign NetworkPolicy succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, k.ns+"/"+policyName) {
		t.Errorf("refusal %q: want one line naming %s/%s", msg, k.ns, policyName)
	}
	if after := k.get(t); after.ResourceVersion != before.ResourceVersion || k.api.Count() != 0 {
		t.Errorf("the foreign object changed (resourceVersion %s -> %s, %d writes)", before.ResourceVersion, after.ResourceVersion, k.api.Count())
	}
}

// The factory finds the cluster through kubeconfig= and writes the
// policy with the pod selector the flag gives.
func testFactory(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	reg := sink.Registry{"k8s-networkpolicy": Factory}
	spec, err := reg.ParseFlag("k8s-networkpolicy:" + k.ns + "/" + policyName + "?pod_selector=app=web,tier=front&kubeconfig=" + c.Kubeconfig(t, kubetest.Admin))
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{OwnerID: "factory"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "k8s-networkpolicy:"+k.ns+"/"+policyName {
		t.Errorf("name %q", s.Name())
	}
	d := sets(pfx("54.1.1.1/32"), nil)
	sinktest.MustSync(t, step(s, d), d)
	obj := k.get(t)
	if obj == nil || obj.Spec.PodSelector.MatchLabels["app"] != "web" || obj.Spec.PodSelector.MatchLabels["tier"] != "front" {
		t.Fatalf("policy %+v", obj)
	}
	// Opening checks options only; a missing kubeconfig fails the
	// first read, on one line naming it.
	spec, err = reg.ParseFlag("k8s-networkpolicy:" + k.ns + "/" + policyName + "?kubeconfig=/nonexistent/kubeconfig")
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
		"k8s-networkpolicy:" + policyName,
		"k8s-networkpolicy:" + k.ns + "/" + policyName + "?pod_selector=app",
		"k8s-networkpolicy:" + k.ns + "/" + policyName + "?selector=app=web",
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
