// Package kubecidr keeps a cluster-scoped custom resource that holds a
// list of CIDRs in sync with the desired sets: Cilium's CiliumCIDRGroup
// (cilium-cidrgroup) and Calico's GlobalNetworkSet
// (calico-globalnetworkset). Network policies select the object by name or
// labels, so one list serves many policies.
//
// The objects hold CIDRs only, so the sinks are Shapers like a managed
// prefix list: ports, protocol and direction are dropped, and each prefix
// goes to one set. Ownership is per object, as for k8s-networkpolicy
// (kubeobj's label and owner annotation, its safe first write and its
// size guard); which set each prefix belongs to is the JSON map in the
// annotation pdsafelist.io/sets. When that record no longer parses, every
// prefix is read back unlabelled, so a hand edit never turns into
// removals. The dynamic client writes them: no Cilium or Calico module is
// needed.
package kubecidr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubenames"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
)

// Kind is one custom resource that holds a list of CIDRs.
type Kind struct {
	// Type is the sink type, e.g. "cilium-cidrgroup".
	Type     string
	Resource schema.GroupVersionResource
	Kind     string
	// Field is the path of the list in the object.
	Field []string
	// RBAC is the shipped ClusterRole and binding the sink needs.
	RBAC string
}

// The kinds this package writes.
var (
	// Cilium: cilium.io/v2 CiliumCIDRGroup; policies reference it with
	// fromCIDRSet/toCIDRSet cidrGroupRef (or cidrGroupSelector).
	Cilium = Kind{
		Type:     "cilium-cidrgroup",
		Resource: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumcidrgroups"},
		Kind:     "CiliumCIDRGroup",
		Field:    []string{"spec", "externalCIDRs"},
		RBAC:     "scripts/k8s/rbac-cilium-cidrgroup.yaml",
	}
	// Calico: crd.projectcalico.org/v1 GlobalNetworkSet; policies select
	// it by its labels.
	Calico = Kind{
		Type:     "calico-globalnetworkset",
		Resource: schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "globalnetworksets"},
		Kind:     "GlobalNetworkSet",
		Field:    []string{"spec", "nets"},
		RBAC:     "scripts/k8s/rbac-calico-globalnetworkset.yaml",
	}
)

// Options are one object's settings (config, or --sink TYPE:NAME?labels=k=v).
// Every default is the zero value.
type Options struct {
	// Name is the cluster-scoped object's name (lower-case letters,
	// digits, - and .); the object is created when missing.
	Name string `yaml:"name"`
	// Labels are k=v,... put on the object, for the policies that select
	// it; app.kubernetes.io/managed-by is pdsafelist's own and refused.
	Labels string `yaml:"labels"`
	// Kubeconfig and Context pick the cluster as kubectl does: the file
	// given, else KUBECONFIG, else ~/.kube/config, else in-cluster.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// OwnerID overrides the global owner_id for this object.
	OwnerID string `yaml:"owner_id"`
}

// Factory registers the sink type of k.
func (k Kind) Factory(help string) sink.Factory {
	return sink.Factory{
		ArgKey:  "name",
		Help:    help,
		Options: func() any { return Options{} },
		Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
			var o Options
			if err := spec.Decode(&o); err != nil {
				return nil, err
			}
			if _, _, err := o.check(spec.Origin, env); err != nil {
				return nil, err
			}
			// The cluster is found at the first call: opening a sink
			// checks its options only.
			connect := func() (API, error) {
				cfg, err := kubeobj.RESTConfig(o.Kubeconfig, o.Context)
				if err != nil {
					return nil, err
				}
				dyn, err := dynamic.NewForConfig(cfg)
				if err != nil {
					return nil, fmt.Errorf("kubeconfig: %w", err)
				}
				return dyn.Resource(k.Resource), nil
			}
			return New(k, &lazyAPI{connect: sync.OnceValues(connect)}, o, spec.Origin, env)
		},
	}
}

// API is the part of the dynamic client for the resource the sink uses.
type API interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions, subresources ...string) (*unstructured.Unstructured, error)
	Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions, subresources ...string) (*unstructured.Unstructured, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*unstructured.Unstructured, error)
}

var _ API = dynamic.ResourceInterface(nil)

// lazyAPI builds the client at its first call.
type lazyAPI struct{ connect func() (API, error) }

func (l *lazyAPI) Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*unstructured.Unstructured, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Get(ctx, name, opts, sub...)
}

func (l *lazyAPI) Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions, sub ...string) (*unstructured.Unstructured, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Create(ctx, obj, opts, sub...)
}

func (l *lazyAPI) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Patch(ctx, name, pt, data, opts, sub...)
}

// writer is API as kubeobj.Write calls it.
type writer struct{ API }

func (w writer) Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions) (*unstructured.Unstructured, error) {
	return w.API.Create(ctx, obj, opts)
}

func (o Options) check(origin string, env sink.Env) (owner string, labels map[string]string, err error) {
	if err := sink.CheckOptions(origin, o); err != nil {
		return "", nil, err
	}
	if err := sink.CheckText(origin, "owner_id", env.OwnerID); err != nil {
		return "", nil, err
	}
	if len(o.Name) > 253 || !kubenames.Subdomain.MatchString(o.Name) {
		return "", nil, fmt.Errorf("%s: name %q: want an object name (lower-case letters, digits, - and .)", origin, o.Name)
	}
	labels, err = kubenames.ParseSelector(o.Labels)
	if err != nil {
		return "", nil, fmt.Errorf("%s: labels: %w", origin, err)
	}
	if _, ok := labels[kubeobj.ManagedByLabel]; ok {
		return "", nil, fmt.Errorf("%s: labels: %s is the ownership label pdsafelist sets itself", origin, kubeobj.ManagedByLabel)
	}
	owner = env.OwnerID
	if o.OwnerID != "" {
		owner = o.OwnerID
	}
	return owner, labels, nil
}

// Object is the sink for one object.
type Object struct {
	kind   Kind
	api    API
	name   string
	owner  string
	labels map[string]string
}

// New returns the sink for a client of k's resource; tests pass one that
// counts and fails writes.
func New(k Kind, api API, o Options, origin string, env sink.Env) (*Object, error) {
	owner, labels, err := o.check(origin, env)
	if err != nil {
		return nil, err
	}
	return &Object{kind: k, api: api, name: o.Name, owner: owner, labels: labels}, nil
}

// Name identifies the target in plans.
func (s *Object) Name() string { return s.kind.Type + ":" + s.name }

func (s *Object) what() string { return s.kind.Kind + " " + s.name }

// Current reads the object. Absent, it holds nothing; without our label,
// or with another owner, it is refused. The snapshot is its kubeobj.Read.
func (s *Object) Current(ctx context.Context) (plan.State, error) {
	obj, err := s.api.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return plan.State{Snapshot: kubeobj.Read{}}, nil
	}
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: get: %s%s", s.Name(), oneline.Error(err), s.hint(err))
	}
	if err := kubeobj.CheckOwner(s.Name(), s.what(), obj, s.owner); err != nil {
		return plan.State{}, err
	}
	read, err := kubeobj.ReadOf(obj)
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), err)
	}
	st := plan.State{Snapshot: read}
	held, bad := s.list(obj)
	if bad != "" {
		st.Drift = append(st.Drift, fmt.Sprintf("%s holds %s, not a CIDR; rewrite", s.what(), bad))
	}
	record, ok := decodeRecord(obj.GetAnnotations()[kubeobj.SetsAnnot])
	if !ok {
		for _, p := range held {
			st.Unlabelled = append(st.Unlabelled, plan.Entry{Prefix: p})
		}
		st.Drift = append(st.Drift, fmt.Sprintf("%s was changed outside pdsafelist: annotation %s no longer maps its %d CIDRs to sets; every routed set holds them until the record is rewritten",
			s.what(), kubeobj.SetsAnnot, len(held)))
		return st, nil
	}
	// The list is what policies use: a recorded prefix counts only while
	// the list holds it, and one the record does not name is held by
	// every routed set.
	for _, p := range held {
		if set, ok := record[p]; ok {
			st.Owned = append(st.Owned, plan.Entry{Set: set, Prefix: p})
		} else {
			st.Unlabelled = append(st.Unlabelled, plan.Entry{Prefix: p})
		}
	}
	plan.Sort(st.Owned)
	want := s.object(st.Owned)
	if !slices.Equal(stringList(obj, s.kind.Field), stringList(want, s.kind.Field)) || len(st.Owned) != len(record) {
		st.Drift = append(st.Drift, fmt.Sprintf("%s differs from its record (edited by hand); rewrite", s.what()))
	}
	if !maps.Equal(obj.GetLabels(), want.GetLabels()) {
		st.Drift = append(st.Drift, fmt.Sprintf("%s has labels %v, want %v; rewrite", s.what(), obj.GetLabels(), want.GetLabels()))
	}
	if obj.GetAnnotations()[kubeobj.OwnerAnnot] != s.owner {
		st.Drift = append(st.Drift, fmt.Sprintf("owner annotation %q, want %q; rewrite", obj.GetAnnotations()[kubeobj.OwnerAnnot], s.owner))
	}
	return st, nil
}

// list is the object's CIDRs, masked, sorted and without duplicates; bad
// is the first item that is not one.
func (s *Object) list(obj *unstructured.Unstructured) (held []netip.Prefix, bad string) {
	items, _, _ := unstructured.NestedFieldNoCopy(obj.Object, s.kind.Field...)
	raw, _ := items.([]any)
	for _, it := range raw {
		str, _ := it.(string)
		p, err := parseCIDR(str)
		if err != nil {
			if bad == "" {
				bad = fmt.Sprintf("%q", oneline.String(fmt.Sprint(it)))
			}
			continue
		}
		held = append(held, p)
	}
	slices.SortFunc(held, netip.Prefix.Compare)
	return slices.Compact(held), bad
}

// parseCIDR reads a CIDR, or an address as a host prefix (Calico's nets
// take both).
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errors.New("not an address")
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// stringList is the list at field as strings, as stored.
func stringList(obj *unstructured.Unstructured, field []string) []string {
	items, _, _ := unstructured.NestedFieldNoCopy(obj.Object, field...)
	raw, _ := items.([]any)
	out := make([]string, len(raw))
	for i, it := range raw {
		out[i] = fmt.Sprint(it)
	}
	return out
}

// Shape drops ports, protocol and direction, which the object does not
// hold, and gives each prefix to one set (plan.Claim). A prefix can move
// between sets in place: the list and its record change in one write.
func (s *Object) Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	v4, _ := sink.BareCIDRs(desired, false)
	v6, _ := sink.BareCIDRs(desired, true)
	for i := range v4 {
		v4[i].Prefixes = append(v4[i].Prefixes, v6[i].Prefixes...)
		v4[i].LastKnown = append(v4[i].LastKnown, v6[i].LastKnown...)
	}
	held := map[plan.Entry]string{}
	for _, e := range current.Owned {
		held[plan.Entry{Prefix: e.Prefix}] = e.Set
	}
	out, _ := plan.Claim(v4, held, plan.RelabelInPlace)
	return out, nil
}

// Check refuses, before any write, an object the server would refuse for
// its size.
func (s *Object) Check(p plan.SinkPlan) error {
	read, _ := p.Snapshot.(kubeobj.Read)
	res := p.Result()
	return kubeobj.CheckSize(p.Sink, s.object(res), len(res), read)
}

// Apply writes the plan's result: created when Current found no object,
// else one server-side apply conditioned on the version it read.
func (s *Object) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	read, ok := p.Snapshot.(kubeobj.Read)
	if !ok {
		return fmt.Errorf("%s: plan made without reading the %s; re-run", s.Name(), s.kind.Kind)
	}
	err := kubeobj.Write[*unstructured.Unstructured](ctx, writer{s.api}, s.name, s.object(p.Result()), read)
	switch {
	case errors.Is(err, kubeobj.ErrExists), errors.Is(err, kubeobj.ErrChanged):
		return fmt.Errorf("%s: %s %w", s.Name(), s.what(), err)
	case err != nil:
		return fmt.Errorf("%s: %w%s", s.Name(), err, s.hint(err))
	}
	return nil
}

// hint says what a refusal by RBAC needs.
func (s *Object) hint(err error) string {
	return kubeobj.Forbidden(err, "get, create and patch on "+s.kind.Resource.GroupResource().String(), s.kind.RBAC)
}

// object is what the sink writes for entries, metadata included.
func (s *Object) object(entries []plan.Entry) *unstructured.Unstructured {
	labels, annotations := kubeobj.Marks(s.owner)
	maps.Copy(labels, s.labels)
	annotations[kubeobj.SetsAnnot] = encodeRecord(entries)
	var ps []netip.Prefix
	for _, e := range entries {
		ps = append(ps, e.Prefix)
	}
	slices.SortFunc(ps, netip.Prefix.Compare)
	ps = slices.Compact(ps)
	// Never nil: Cilium's schema requires the list.
	list := make([]any, len(ps))
	for i, p := range ps {
		list[i] = p.String()
	}
	obj := &unstructured.Unstructured{Object: map[string]any{}}
	obj.SetAPIVersion(s.kind.Resource.GroupVersion().String())
	obj.SetKind(s.kind.Kind)
	obj.SetName(s.name)
	obj.SetLabels(labels)
	obj.SetAnnotations(annotations)
	_ = unstructured.SetNestedField(obj.Object, list, s.kind.Field...)
	return obj
}

// encodeRecord is the sets annotation: each set's prefixes, sorted.
func encodeRecord(entries []plan.Entry) string {
	m := map[string][]string{}
	for _, e := range entries {
		m[e.Set] = append(m[e.Set], e.Prefix.String())
	}
	for k, v := range m {
		slices.Sort(v)
		m[k] = slices.Compact(v)
	}
	data, _ := json.Marshal(m)
	return string(data)
}

// decodeRecord parses the sets annotation into the set of each prefix; ok
// is false when it is missing or malformed in any part, names a set
// config would refuse, or gives a prefix to two sets.
func decodeRecord(s string) (sets map[netip.Prefix]string, ok bool) {
	var m map[string][]string
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, false
	}
	sets = map[netip.Prefix]string{}
	for set, list := range m {
		if !plan.ValidSetName(set) {
			return nil, false
		}
		for _, item := range list {
			p, err := netip.ParsePrefix(item)
			if err != nil || p != p.Masked() {
				return nil, false
			}
			if other, dup := sets[p]; dup && other != set {
				return nil, false
			}
			sets[p] = set
		}
	}
	return sets, true
}

// Factories of the two sink types.
var (
	CiliumFactory = Cilium.Factory("cilium-cidrgroup:NAME  Cilium CiliumCIDRGroup (cilium.io/v2, cluster-scoped) holding the sets' CIDRs, for cidrGroupRef in CiliumNetworkPolicies; only an object labelled managed-by pdsafelist is changed (options: labels=k=v,..., kubeconfig=FILE, context=NAME, owner_id)")
	CalicoFactory = Calico.Factory("calico-globalnetworkset:NAME  Calico GlobalNetworkSet (crd.projectcalico.org/v1) holding the sets' CIDRs, selected by its labels in GlobalNetworkPolicies; only an object labelled managed-by pdsafelist is changed (options: labels=k=v,..., kubeconfig=FILE, context=NAME, owner_id)")
)
