package k8snetpol

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

var harness = sinktest.Harness{
	Type: "k8s-networkpolicy",
	Skip: map[sinktest.Case]string{
		sinktest.ForeignCovering: "ownership is per object: an ipBlock in our policy that the record does not name reads back unlabelled, not foreign, and other policies are not read",
		sinktest.FileDirectory:   "the sink writes through the Kubernetes API, not files",
	},
}

// TestKubernetes runs every case against one real kube-apiserver, each
// target in a namespace of its own.
func TestKubernetes(t *testing.T) {
	c := kubetest.Start(t)
	admin, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("conformance", func(t *testing.T) {
		h := harness
		h.New = func(t testing.TB) *sinktest.Target { return newTarget(t, admin).target() }
		sinktest.Run(t, h)
	})
	t.Run("rerun-writes-nothing", func(t *testing.T) { testRerun(t, admin) })
	t.Run("shrink-removes-the-retired-prefix", func(t *testing.T) { testShrink(t, admin) })
	t.Run("foreign-object-refused", func(t *testing.T) { testForeign(t, admin) })
	t.Run("first-write-race-refused", func(t *testing.T) { testCreateRace(t, admin) })
	t.Run("first-write-then-field-removal", func(t *testing.T) { testFirstWrite(t, admin) })
	t.Run("first-write-cut-short", func(t *testing.T) { testFirstWriteCutShort(t, admin) })
	t.Run("size-guard", func(t *testing.T) { testSizeGuard(t, admin) })
	t.Run("factory-kubeconfig", func(t *testing.T) { testFactory(t, c, admin) })
	t.Run("rbac-role", func(t *testing.T) { testRBAC(t, c, admin) })
}

var namespaces atomic.Int64

// counting passes calls through, counts the writes that reach the
// server, and when armed fails the next write before sending it.
type counting struct {
	API
	kubetest.Writes
	mu sync.Mutex
	// failPatch, when set, fails the next patch of that type.
	failPatch types.PatchType
}

func (c *counting) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*networkingv1.NetworkPolicy, error) {
	if err := c.Fire(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	fail := c.failPatch == pt
	if fail {
		c.failPatch = ""
	}
	c.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("injected failure of the %s patch", pt)
	}
	out, err := c.API.Patch(ctx, name, pt, data, opts, sub...)
	c.Done(err)
	return out, err
}

func (c *counting) Create(ctx context.Context, obj *networkingv1.NetworkPolicy, opts metav1.CreateOptions) (*networkingv1.NetworkPolicy, error) {
	if err := c.Fire(); err != nil {
		return nil, err
	}
	out, err := c.API.Create(ctx, obj, opts)
	c.Done(err)
	return out, err
}

// kubeTarget is one namespace with the policy "pdsafelist" in it.
type kubeTarget struct {
	admin kubernetes.Interface
	ns    string
	api   *counting
}

const policyName = "pdsafelist"

func newTarget(t testing.TB, admin kubernetes.Interface) *kubeTarget {
	t.Helper()
	ns := fmt.Sprintf("sinktest-%d", namespaces.Add(1))
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &kubeTarget{admin: admin, ns: ns, api: &counting{API: admin.NetworkingV1().NetworkPolicies(ns)}}
}

func (k *kubeTarget) opts() Options { return Options{Policy: k.ns + "/" + policyName} }

func (k *kubeTarget) open(t testing.TB) *Policy {
	t.Helper()
	s, err := New(k.api, k.opts(), "test", sink.Env{OwnerID: "sinktest"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *kubeTarget) client() API { return k.admin.NetworkingV1().NetworkPolicies(k.ns) }

// get is the object, or nil.
func (k *kubeTarget) get(t testing.TB) *networkingv1.NetworkPolicy {
	t.Helper()
	obj, err := k.client().Get(context.Background(), policyName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// edit changes the object by hand, as kubectl edit would.
func (k *kubeTarget) edit(t testing.TB, change func(obj *networkingv1.NetworkPolicy)) {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		t.Fatal("no NetworkPolicy to edit")
	}
	change(obj)
	if _, err := k.admin.NetworkingV1().NetworkPolicies(k.ns).Update(context.Background(), obj, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
}

// snapshot renders the object without what differs between targets or
// writes (namespace, uid, resourceVersion, managed fields).
func (k *kubeTarget) snapshot(t testing.TB) string {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		return "no NetworkPolicy"
	}
	var b strings.Builder
	for _, key := range slices.Sorted(maps.Keys(obj.Labels)) {
		fmt.Fprintf(&b, "label %s=%s\n", key, obj.Labels[key])
	}
	for _, key := range slices.Sorted(maps.Keys(obj.Annotations)) {
		fmt.Fprintf(&b, "annotation %s=%s\n", key, obj.Annotations[key])
	}
	spec, err := json.MarshalIndent(obj.Spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b.Write(spec)
	return b.String()
}

func (k *kubeTarget) target() *sinktest.Target {
	hostile := func(with func(o *Options, env *sink.Env, v string)) func(testing.TB, string) (sink.Sink, error) {
		return func(_ testing.TB, v string) (sink.Sink, error) {
			o, env := k.opts(), sink.Env{OwnerID: "sinktest"}
			with(&o, &env, v)
			return New(k.api, o, "test", env)
		}
	}
	return &sinktest.Target{
		Open:     func(t testing.TB) sink.Sink { return k.open(t) },
		Writes:   func(testing.TB) int { return k.api.Count() },
		Snapshot: k.snapshot,
		InjectOwned: func(t testing.TB, e plan.Entry) {
			s := k.open(t)
			k.edit(t, func(obj *networkingv1.NetworkPolicy) {
				entries, ok := decodeRecord(obj.Annotations[SetsAnnot])
				if !ok {
					t.Fatal("the record does not parse before the injection")
				}
				want := s.spec(append(entries, e))
				obj.Spec, obj.Annotations = want.Spec, want.Annotations
			})
		},
		// Delete one ipBlock by hand; the record still names it.
		Drift: func(t testing.TB) {
			k.edit(t, func(obj *networkingv1.NetworkPolicy) {
				if len(obj.Spec.Egress) == 0 || len(obj.Spec.Egress[0].To) == 0 {
					t.Fatal("no egress ipBlock to remove")
				}
				obj.Spec.Egress[0].To = obj.Spec.Egress[0].To[1:]
			})
		},
		// The record rewritten by hand into prose; the rules stay.
		Unlabel: func(t testing.TB) {
			k.edit(t, func(obj *networkingv1.NetworkPolicy) {
				obj.Annotations[SetsAnnot] = "PagerDuty webhooks - managed by pdsafelist"
			})
		},
		FailNext: func(testing.TB) { k.api.Arm() },
		Tamper: map[string]func(testing.TB){
			// Our label removed: the object is someone else's now.
			"label-removed": func(t testing.TB) {
				k.edit(t, func(obj *networkingv1.NetworkPolicy) { delete(obj.Labels, ManagedByLabel) })
			},
			// Another installation's owner id.
			"other-owner": func(t testing.TB) {
				k.edit(t, func(obj *networkingv1.NetworkPolicy) { obj.Annotations[OwnerAnnot] = "someone-else" })
			},
			// Ours deleted and a foreign policy of the same name made.
			"foreign-object": func(t testing.TB) { k.replaceForeign(t) },
		},
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id":        hostile(func(_ *Options, env *sink.Env, v string) { env.OwnerID = v }),
			"owner_id option": hostile(func(o *Options, _ *sink.Env, v string) { o.OwnerID = v }),
			"pod_selector":    hostile(func(o *Options, _ *sink.Env, v string) { o.PodSelector = "app=" + v }),
			"kubeconfig":      hostile(func(o *Options, _ *sink.Env, v string) { o.Kubeconfig = v }),
			"context":         hostile(func(o *Options, _ *sink.Env, v string) { o.Context = v }),
			"policy":          hostile(func(o *Options, _ *sink.Env, v string) { o.Policy = k.ns + "/" + v }),
		},
	}
}

// replaceForeign deletes the object and creates one another tool owns
// under the same name.
func (k *kubeTarget) replaceForeign(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := k.client().(interface {
		Delete(context.Context, string, metav1.DeleteOptions) error
	}).Delete(ctx, policyName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	foreign := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: policyName, Labels: map[string]string{"app.kubernetes.io/managed-by": "helm"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if _, err := k.admin.NetworkingV1().NetworkPolicies(k.ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
