// Package k8snetpol keeps a networking.k8s.io/v1 NetworkPolicy in a
// cluster in sync with the desired sets, written as kubeobj writes every
// object we own: created when absent (refused if someone made it since the
// read), then server-side apply over the version read.
//
// The policy has the template sink's k8s-networkpolicy shape: one rule per
// direction, protocol and port, ingress sets as "from" ipBlocks and egress
// sets as "to" ipBlocks, policyTypes for the directions present, and a
// policy selecting no pod when there is nothing to allow (a policy with no
// rules would isolate every pod it selects). Unlike the template, prefixes
// are not aggregated: each entry is its own ipBlock, so what the object
// holds reads back as exactly the entries written.
//
// Ownership is per object: ours carries the label
// app.kubernetes.io/managed-by=pdsafelist and the owner id in the
// annotation pdsafelist.io/owner; any other object of the name is refused
// untouched. Which set each ipBlock belongs to is kept in the annotation
// pdsafelist.io/sets, a JSON map from set to its entries. When that record
// no longer parses, or no longer matches the rules, every ipBlock is read
// back unlabelled (plan.State.Unlabelled), so a hand edit never turns into
// removals, and the next apply writes the record again.
package k8snetpol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	networkingclient "k8s.io/client-go/kubernetes/typed/networking/v1"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubenames"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
)

// Metadata the sink owns the object by (kubeobj's, shared by every sink
// that owns a Kubernetes object).
const (
	ManagedByLabel = kubeobj.ManagedByLabel
	ManagedBy      = kubeobj.ManagedBy
	OwnerAnnot     = kubeobj.OwnerAnnot
	SetsAnnot      = kubeobj.SetsAnnot
	// FieldManager is the server-side apply manager of our fields.
	FieldManager = kubeobj.FieldManager
	// noEntriesKey selects no pod when the policy allows nothing.
	noEntriesKey = "pdsafelist.io/no-entries"
)

// Options are the sink's settings (config, or --sink
// k8s-networkpolicy:NAMESPACE/NAME?pod_selector=k=v).
type Options struct {
	// Policy is NAMESPACE/NAME.
	Policy string `yaml:"policy"`
	// PodSelector is k=v,... labels; empty selects every pod.
	PodSelector string `yaml:"pod_selector"`
	// Kubeconfig and Context pick the cluster as kubectl does: the file
	// given, else KUBECONFIG, else ~/.kube/config, else in-cluster.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// OwnerID overrides the global owner_id for this object.
	OwnerID string `yaml:"owner_id"`
}

// Factory registers the k8s-networkpolicy sink type.
var Factory = sink.Factory{
	ArgKey:  "policy",
	Help:    "k8s-networkpolicy:NAMESPACE/NAME  Kubernetes NetworkPolicy written by server-side apply; only an object labelled managed-by pdsafelist is changed (options: pod_selector=k=v,..., kubeconfig=FILE, context=NAME, owner_id)",
	Options: func() any { return Options{} },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		var o Options
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if _, err := o.check(spec.Origin, env); err != nil {
			return nil, err
		}
		// The cluster is found at the first call, as AWS sinks find
		// credentials: opening a sink checks its options only.
		ns, _, _ := strings.Cut(o.Policy, "/")
		connect := func() (API, error) {
			cs, err := kubeobj.Clientset(o.Kubeconfig, o.Context)
			if err != nil {
				return nil, err
			}
			return cs.NetworkingV1().NetworkPolicies(ns), nil
		}
		return New(&lazyAPI{connect: sync.OnceValues(connect)}, o, spec.Origin, env)
	},
}

// API is the part of the NetworkPolicy client the sink uses.
type API interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*networkingv1.NetworkPolicy, error)
	Create(ctx context.Context, obj *networkingv1.NetworkPolicy, opts metav1.CreateOptions) (*networkingv1.NetworkPolicy, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*networkingv1.NetworkPolicy, error)
}

var _ API = networkingclient.NetworkPolicyInterface(nil)

// lazyAPI builds the client at its first call.
type lazyAPI struct{ connect func() (API, error) }

func (l *lazyAPI) Get(ctx context.Context, name string, opts metav1.GetOptions) (*networkingv1.NetworkPolicy, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Get(ctx, name, opts)
}

func (l *lazyAPI) Create(ctx context.Context, obj *networkingv1.NetworkPolicy, opts metav1.CreateOptions) (*networkingv1.NetworkPolicy, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Create(ctx, obj, opts)
}

func (l *lazyAPI) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*networkingv1.NetworkPolicy, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Patch(ctx, name, pt, data, opts, sub...)
}

func (o Options) check(origin string, env sink.Env) (owner string, err error) {
	if err := sink.CheckOptions(origin, o); err != nil {
		return "", err
	}
	if err := sink.CheckText(origin, "owner_id", env.OwnerID); err != nil {
		return "", err
	}
	ns, name, ok := strings.Cut(o.Policy, "/")
	if !ok || !kubenames.DNSLabel.MatchString(ns) || len(name) > 253 || !kubenames.Subdomain.MatchString(name) {
		return "", fmt.Errorf("%s: policy %q: want NAMESPACE/NAME (a namespace label and an object name: lower-case letters, digits, - and .)", origin, o.Policy)
	}
	if _, err := kubenames.ParseSelector(o.PodSelector); err != nil {
		return "", fmt.Errorf("%s: pod_selector: %w", origin, err)
	}
	owner = env.OwnerID
	if o.OwnerID != "" {
		owner = o.OwnerID
	}
	return owner, nil
}

// Policy is the NetworkPolicy sink.
type Policy struct {
	api       API
	namespace string
	name      string
	owner     string
	selector  map[string]string
}

// New returns the sink for a client scoped to the policy's namespace;
// tests pass one that counts and fails writes.
func New(api API, o Options, origin string, env sink.Env) (*Policy, error) {
	owner, err := o.check(origin, env)
	if err != nil {
		return nil, err
	}
	sel, _ := kubenames.ParseSelector(o.PodSelector)
	ns, name, _ := strings.Cut(o.Policy, "/")
	return &Policy{api: api, namespace: ns, name: name, owner: owner, selector: sel}, nil
}

// Name identifies the target in plans.
func (s *Policy) Name() string { return "k8s-networkpolicy:" + s.namespace + "/" + s.name }

// The plan's snapshot is the kubeobj.Read of the object: Apply writes
// against the version read, so an object changed or handed to someone else
// since the read is not overwritten, and one made since is not taken over.

// Current reads the object. Absent, it holds nothing; without our label,
// or with another owner, it is refused.
func (s *Policy) Current(ctx context.Context) (plan.State, error) {
	obj, err := s.api.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return plan.State{Snapshot: kubeobj.Read{}}, nil
	}
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: get: %s%s", s.Name(), oneline.Error(err), hint(err))
	}
	if err := s.ours(obj); err != nil {
		return plan.State{}, err
	}
	read, err := kubeobj.ReadOf(obj)
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), err)
	}
	st := plan.State{Snapshot: read}
	rules := fromRules(obj.Spec)
	entries, ok := decodeRecord(obj.Annotations[SetsAnnot])
	if !ok {
		st.Unlabelled = rules
		st.Drift = []string{fmt.Sprintf("NetworkPolicy %s/%s was changed outside pdsafelist: annotation %s no longer maps its %d ipBlocks to sets; every routed set holds them until the record is rewritten",
			s.namespace, s.name, SetsAnnot, len(rules))}
		return st, nil
	}
	// The rules are what is enforced: a recorded entry counts only while
	// its ipBlock is there, and an ipBlock the record does not name is
	// held by every routed set.
	enforced := map[plan.Entry]bool{}
	for _, e := range rules {
		enforced[e] = true
	}
	named := map[plan.Entry]bool{}
	for _, e := range entries {
		k := e
		k.Set = ""
		named[k] = true
		if enforced[k] {
			st.Owned = append(st.Owned, e)
		}
	}
	for _, e := range rules {
		if !named[e] {
			st.Unlabelled = append(st.Unlabelled, e)
		}
	}
	if !equality.Semantic.DeepEqual(obj.Spec, s.spec(entries).Spec) {
		st.Drift = append(st.Drift, fmt.Sprintf("NetworkPolicy %s/%s differs from its record (edited by hand, or pod_selector changed); rewrite", s.namespace, s.name))
	}
	if obj.Annotations[OwnerAnnot] != s.owner {
		st.Drift = append(st.Drift, fmt.Sprintf("owner annotation %q, want %q; rewrite", obj.Annotations[OwnerAnnot], s.owner))
	}
	return st, nil
}

// ours refuses an object another tool or installation made.
func (s *Policy) ours(obj *networkingv1.NetworkPolicy) error {
	return kubeobj.CheckOwner(s.Name(), "NetworkPolicy "+s.namespace+"/"+s.name, obj, s.owner)
}

// Check refuses, before any write, a policy the server would refuse for
// its size.
func (s *Policy) Check(p plan.SinkPlan) error {
	read, _ := p.Snapshot.(kubeobj.Read)
	res := p.Result()
	return kubeobj.CheckSize(p.Sink, s.object(res), len(res), read)
}

// Apply writes the plan's result: created when Current found no object,
// else one server-side apply conditioned on the version it read.
func (s *Policy) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	read, ok := p.Snapshot.(kubeobj.Read)
	if !ok {
		return fmt.Errorf("%s: plan made without reading the NetworkPolicy; re-run", s.Name())
	}
	err := kubeobj.Write[*networkingv1.NetworkPolicy](ctx, s.api, s.name, s.object(p.Result()), read)
	switch {
	case errors.Is(err, kubeobj.ErrExists), errors.Is(err, kubeobj.ErrChanged):
		return fmt.Errorf("%s: NetworkPolicy %s/%s %w", s.Name(), s.namespace, s.name, err)
	case err != nil:
		return fmt.Errorf("%s: %w%s", s.Name(), err, hint(err))
	}
	return nil
}

// object is spec with its apiVersion and kind, as it is written.
func (s *Policy) object(entries []plan.Entry) *networkingv1.NetworkPolicy {
	obj := s.spec(entries)
	obj.TypeMeta = metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
	return obj
}

// hint says what a refusal by RBAC needs.
func hint(err error) string {
	return kubeobj.Forbidden(err, "get, create and patch on networkpolicies in the namespace", "scripts/k8s/rbac-networkpolicy.yaml")
}

// spec is the object holding entries, metadata included.
func (s *Policy) spec(entries []plan.Entry) *networkingv1.NetworkPolicy {
	rec, _ := encodeRecord(entries)
	labels, annotations := kubeobj.Marks(s.owner)
	annotations[SetsAnnot] = rec
	obj := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: labels, Annotations: annotations},
	}
	type ruleKey struct {
		dir   plan.Direction
		proto plan.Protocol
		port  uint16
	}
	rules := map[ruleKey][]netip.Prefix{}
	var order []ruleKey
	for _, e := range plan.Sort(slices.Clone(entries)) {
		k := ruleKey{e.Direction, e.Protocol, e.Port}
		if _, ok := rules[k]; !ok {
			order = append(order, k)
		}
		if !slices.Contains(rules[k], e.Prefix) {
			rules[k] = append(rules[k], e.Prefix)
		}
	}
	if len(order) == 0 {
		obj.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: noEntriesKey, Operator: metav1.LabelSelectorOpExists}}}
		obj.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		return obj
	}
	slices.SortFunc(order, func(a, b ruleKey) int {
		return plan.Compare(plan.Entry{Direction: a.dir, Protocol: a.proto, Port: a.port}, plan.Entry{Direction: b.dir, Protocol: b.proto, Port: b.port})
	})
	obj.Spec.PodSelector = metav1.LabelSelector{MatchLabels: s.selector}
	for _, k := range order {
		ps := rules[k]
		slices.SortFunc(ps, netip.Prefix.Compare)
		peers := make([]networkingv1.NetworkPolicyPeer, len(ps))
		for i, p := range ps {
			peers[i] = networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: p.String()}}
		}
		proto := protocol(k.proto)
		port := networkingv1.NetworkPolicyPort{Protocol: &proto}
		if k.port != 0 {
			v := intstr.FromInt32(int32(k.port))
			port.Port = &v
		}
		ports := []networkingv1.NetworkPolicyPort{port}
		if k.dir == plan.Ingress {
			obj.Spec.Ingress = append(obj.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
		} else {
			obj.Spec.Egress = append(obj.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
		}
	}
	// The template's order: Ingress, then Egress.
	if len(obj.Spec.Ingress) > 0 {
		obj.Spec.PolicyTypes = append(obj.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	if len(obj.Spec.Egress) > 0 {
		obj.Spec.PolicyTypes = append(obj.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	return obj
}

func protocol(p plan.Protocol) corev1.Protocol {
	if p == plan.UDP {
		return "UDP"
	}
	return "TCP"
}

// fromRules reads the rules back as entries without sets, one per ipBlock
// and port, sorted and without duplicates. Peers and ports the sink does
// not write (selectors, except, named ports, SCTP) are not entries.
func fromRules(spec networkingv1.NetworkPolicySpec) []plan.Entry {
	var out []plan.Entry
	add := func(dir plan.Direction, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) {
		for _, pp := range ports {
			proto := plan.TCP
			if pp.Protocol != nil {
				switch *pp.Protocol {
				case "TCP":
				case "UDP":
					proto = plan.UDP
				default:
					continue
				}
			}
			var port uint16
			if pp.Port != nil {
				if pp.Port.Type != intstr.Int || pp.Port.IntVal < 1 || pp.Port.IntVal > 65535 || pp.EndPort != nil {
					continue
				}
				port = uint16(pp.Port.IntVal)
			}
			for _, peer := range peers {
				if peer.IPBlock == nil || len(peer.IPBlock.Except) > 0 {
					continue
				}
				p, err := netip.ParsePrefix(peer.IPBlock.CIDR)
				if err != nil {
					continue
				}
				out = append(out, plan.Entry{Prefix: p.Masked(), Direction: dir, Protocol: proto, Port: port})
			}
		}
	}
	for _, r := range spec.Ingress {
		add(plan.Ingress, r.From, r.Ports)
	}
	for _, r := range spec.Egress {
		add(plan.Egress, r.To, r.Ports)
	}
	return slices.Compact(plan.Sort(out))
}

// encodeRecord is the sets annotation: each set's entries as
// "DIRECTION PROTOCOL/PORT PREFIX", sorted.
func encodeRecord(entries []plan.Entry) (string, error) {
	m := map[string][]string{}
	for _, e := range entries {
		m[e.Set] = append(m[e.Set], e.Direction.String()+" "+e.Protocol.String()+"/"+strconv.Itoa(int(e.Port))+" "+e.Prefix.String())
	}
	for _, v := range m {
		slices.Sort(v)
	}
	data, err := json.Marshal(m)
	return string(data), err
}

// decodeRecord parses the sets annotation; ok is false when it is missing
// or malformed in any part, or names a set config would refuse.
func decodeRecord(s string) (entries []plan.Entry, ok bool) {
	var m map[string][]string
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, false
	}
	for set, list := range m {
		if !plan.ValidSetName(set) {
			return nil, false
		}
		for _, item := range list {
			e, err := parseEntry(item)
			if err != nil {
				return nil, false
			}
			e.Set = set
			entries = append(entries, e)
		}
	}
	return slices.Compact(plan.Sort(entries)), true
}

func parseEntry(s string) (plan.Entry, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return plan.Entry{}, errors.New("want 3 fields")
	}
	dir, err := plan.ParseDirection(f[0])
	if err != nil {
		return plan.Entry{}, err
	}
	protoName, portText, ok := strings.Cut(f[1], "/")
	if !ok {
		return plan.Entry{}, errors.New("want PROTOCOL/PORT")
	}
	proto, err := plan.ParseProtocol(protoName)
	if err != nil {
		return plan.Entry{}, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return plan.Entry{}, err
	}
	p, err := netip.ParsePrefix(f[2])
	if err != nil || p != p.Masked() {
		return plan.Entry{}, errors.New("bad prefix")
	}
	return plan.Entry{Prefix: p, Direction: dir, Protocol: proto, Port: uint16(port)}, nil
}
