package template

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// The k8s-networkpolicy format is built from the k8s.io/api types and
// marshalled, not written as YAML text: through JSON every string comes
// out quoted where YAML 1.1 would read it as something else, so an option
// value such as name=no or name=1e3 cannot turn into false or 1000 when
// kubectl reads the file.
func init() {
	funcs["networkPolicy"] = networkPolicyYAML
}

const networkPolicyFormat = `{{networkPolicy .}}`

// noEntriesKey selects no pod when there is nothing to allow: a policy
// with no rules would isolate every pod it selects.
const noEntriesKey = "pdsafelist.io/no-entries"

// networkPolicy is the object for d: one rule per direction, protocol and
// port with its aggregated prefixes, policyTypes for the directions
// present (Ingress, then Egress).
func networkPolicy(d Data) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name, Namespace: d.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "pdsafelist"},
		},
	}
	if len(d.Rules) == 0 {
		np.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: noEntriesKey, Operator: metav1.LabelSelectorOpExists}}}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		return np
	}
	np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: d.PodSelector}
	for _, r := range d.Rules {
		peers := make([]networkingv1.NetworkPolicyPeer, len(r.Prefixes))
		for i, p := range r.Prefixes {
			peers[i] = networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: p.String()}}
		}
		proto := corev1.ProtocolTCP
		if r.Protocol == plan.UDP.String() {
			proto = corev1.ProtocolUDP
		}
		port := networkingv1.NetworkPolicyPort{Protocol: &proto}
		// Port 0 is every port: no port field, as the server refuses 0.
		if r.Port != 0 {
			v := intstr.FromInt32(int32(r.Port))
			port.Port = &v
		}
		ports := []networkingv1.NetworkPolicyPort{port}
		if r.Direction == plan.Ingress.String() {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
		} else {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
		}
	}
	if len(np.Spec.Ingress) > 0 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	if len(np.Spec.Egress) > 0 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	return np
}

func networkPolicyYAML(d Data) (string, error) {
	out, err := yaml.Marshal(networkPolicy(d))
	return string(out), err
}
