package template

import (
	"context"
	"os"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// The rendered NetworkPolicy decodes strictly into the upstream Kubernetes
// type (an unknown or misplaced field is an error), with the peers, ports
// and policy types the entries ask for.
func TestNetworkPolicyDecodesStrictly(t *testing.T) {
	s := newSink(t, Options{Format: "k8s-networkpolicy", Name: "pagerduty", Namespace: "hooks", PodSelector: "app=receiver,tier=web"})
	apply(t, s, entries())
	data, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(data, &np); err != nil {
		t.Fatalf("strict decode: %v\n%s", err, data)
	}
	if np.Kind != "NetworkPolicy" || np.APIVersion != "networking.k8s.io/v1" || np.Name != "pagerduty" || np.Namespace != "hooks" {
		t.Errorf("object %s %s %s/%s", np.APIVersion, np.Kind, np.Namespace, np.Name)
	}
	if got := np.Spec.PodSelector.MatchLabels; got["app"] != "receiver" || got["tier"] != "web" || len(got) != 2 {
		t.Errorf("pod selector %v", got)
	}
	if got := np.Spec.PolicyTypes; !slices.Equal(got, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policy types %v", got)
	}
	var from []string
	for _, r := range np.Spec.Ingress {
		for _, p := range r.From {
			from = append(from, p.IPBlock.CIDR)
		}
		if len(r.Ports) != 1 || r.Ports[0].Port.IntValue() != 443 || string(*r.Ports[0].Protocol) != "TCP" {
			t.Errorf("ingress ports %+v", r.Ports)
		}
	}
	if !slices.Equal(from, []string{"44.242.69.192/31", "2600:1f14:d0c:9d00::a1/128"}) {
		t.Errorf("ingress peers %v", from)
	}
	if len(np.Spec.Egress) != 1 || np.Spec.Egress[0].To[0].IPBlock.CIDR != "54.203.252.221/32" {
		t.Errorf("egress %+v", np.Spec.Egress)
	}
}

// With nothing to allow, the policy selects no pod: a policy without rules
// would isolate every pod it selects.
func TestEmptyNetworkPolicySelectsNothing(t *testing.T) {
	s := newSink(t, Options{Format: "k8s-networkpolicy"})
	if err := s.Apply(context.Background(), plan.SinkPlan{}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.opts.Path)
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(data, &np); err != nil {
		t.Fatalf("strict decode: %v\n%s", err, data)
	}
	sel := np.Spec.PodSelector
	if len(sel.MatchLabels) != 0 || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Operator != "Exists" || len(np.Spec.Ingress) != 0 {
		t.Errorf("empty policy selects %+v with %d ingress rules", sel, len(np.Spec.Ingress))
	}
}

// Option values that YAML 1.1 reads as other types stay strings: kubectl
// decodes manifests as YAML 1.1 (sigs.k8s.io/yaml), where a bare no is
// false, 1e3 is 1000 and a key on is true. Decoded generically, as kubectl
// decodes before it knows the type, every value is the string given.
func TestNetworkPolicyYAML11Values(t *testing.T) {
	s := newSink(t, Options{Format: "k8s-networkpolicy", Name: "1e3", Namespace: "no", PodSelector: "on=yes,y=0x1f"})
	apply(t, s, entries())
	data, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	meta, _ := doc["metadata"].(map[string]any)
	if meta["name"] != "1e3" || meta["namespace"] != "no" {
		t.Errorf("metadata name %#v namespace %#v, want the strings \"1e3\" and \"no\"\n%s", meta["name"], meta["namespace"], data)
	}
	spec, _ := doc["spec"].(map[string]any)
	sel, _ := spec["podSelector"].(map[string]any)
	labels, _ := sel["matchLabels"].(map[string]any)
	if len(labels) != 2 || labels["on"] != "yes" || labels["y"] != "0x1f" {
		t.Errorf("matchLabels %#v, want on=yes and y=0x1f as strings\n%s", labels, data)
	}
}
