package template

import (
	"context"
	"net/netip"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

// The rendered file is what kubectl apply -f sends: decoded as YAML 1.1
// without a type, then created on a real API server, whose validation is
// the check. Names YAML 1.1 reads as other types, a UDP rule and a rule
// for every port (port 0) are all accepted and read back as given.
func TestNetworkPolicyAcceptedByServer(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	admin, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "no"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Options{Format: "k8s-networkpolicy", Name: "1e3", Namespace: "no", PodSelector: "on=yes,y=0x1f"})
	es := append(entries(),
		plan.Entry{Set: "dns", Prefix: netip.MustParsePrefix("54.1.1.1/32"), Direction: plan.Egress, Protocol: plan.UDP, Port: 53},
		plan.Entry{Set: "any", Prefix: netip.MustParsePrefix("54.1.1.2/32"), Direction: plan.Ingress, Protocol: plan.TCP, Port: 0})
	apply(t, s, plan.Sort(es))
	data, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatalf("decode as kubectl would: %v\n%s", err, data)
	}
	gvr := schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	if _, err := dyn.Resource(gvr).Namespace("no").Create(ctx, &u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the server refused the rendered policy: %v\n%s", err, data)
	}
	np, err := admin.NetworkingV1().NetworkPolicies("no").Get(ctx, "1e3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := np.Spec.PodSelector.MatchLabels; got["on"] != "yes" || got["y"] != "0x1f" || len(got) != 2 {
		t.Errorf("pod selector %v", got)
	}
	var udp, every bool
	for _, r := range np.Spec.Egress {
		udp = udp || (len(r.Ports) == 1 && *r.Ports[0].Protocol == corev1.ProtocolUDP && r.Ports[0].Port.IntValue() == 53)
	}
	for _, r := range np.Spec.Ingress {
		every = every || (len(r.Ports) == 1 && r.Ports[0].Port == nil && r.From[0].IPBlock.CIDR == "54.1.1.2/32")
	}
	if !udp || !every {
		t.Errorf("UDP rule %v, every-port rule %v: %+v", udp, every, np.Spec)
	}
}
