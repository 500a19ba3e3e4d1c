package kubecidr

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

var skip = map[sinktest.Case]string{
	sinktest.ForeignCovering: "ownership is per object: a CIDR in our object that the record does not name reads back unlabelled, not foreign, and other objects are not read",
	sinktest.FileDirectory:   "the sink writes through the Kubernetes API, not files",
}

// harnesses, one per kind (the registry test reads their Type literals).
var harnesses = map[string]sinktest.Harness{
	Cilium.Type: sinktest.Harness{Type: "cilium-cidrgroup", Skip: skip},
	Calico.Type: sinktest.Harness{Type: "calico-globalnetworkset", Skip: skip},
}

// env is a cluster with both CRDs installed: Cilium's from the Cilium
// module's own manifest, Calico's from testdata (see the file's comment).
type env struct {
	c   *kubetest.Cluster
	dyn dynamic.Interface
}

func startCluster(t *testing.T) *env {
	c := kubetest.Start(t)
	c.InstallCRD(t, kubetest.CiliumCRD(t, "ciliumcidrgroups.yaml"))
	calico, err := os.ReadFile("../../../testdata/k8s/calico-globalnetworksets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.InstallCRD(t, calico)
	dyn, err := dynamic.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &env{c: c, dyn: dyn}
}

// TestKubernetes runs every case for both kinds against one real
// kube-apiserver, each target an object of its own name.
func TestKubernetes(t *testing.T) {
	e := startCluster(t)
	for _, k := range []Kind{Cilium, Calico} {
		t.Run(k.Type, func(t *testing.T) {
			t.Run("conformance", func(t *testing.T) {
				h := harnesses[k.Type]
				h.New = func(t testing.TB) *sinktest.Target { return newTarget(t, e, k).target() }
				sinktest.Run(t, h)
			})
			t.Run("rerun-writes-nothing", func(t *testing.T) { testRerun(t, e, k) })
			t.Run("shrink-removes-the-retired-prefix", func(t *testing.T) { testShrink(t, e, k) })
			t.Run("foreign-object-refused", func(t *testing.T) { testForeign(t, e, k) })
			t.Run("first-write-race-refused", func(t *testing.T) { testCreateRace(t, e, k) })
			t.Run("changed-since-read-refused", func(t *testing.T) { testChangedSinceRead(t, e, k) })
			t.Run("size-guard", func(t *testing.T) { testSizeGuard(t, e, k) })
			t.Run("factory-kubeconfig", func(t *testing.T) { testFactory(t, e, k) })
			t.Run("rbac-clusterrole", func(t *testing.T) { testRBAC(t, e, k) })
		})
	}
}

var names atomic.Int64

// counting passes calls through, counts the writes that reach the
// server, and when armed fails the next write before sending it.
type counting struct {
	API
	kubetest.Writes
}

func (c *counting) Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions, sub ...string) (*unstructured.Unstructured, error) {
	if err := c.Fire(); err != nil {
		return nil, err
	}
	out, err := c.API.Create(ctx, obj, opts, sub...)
	c.Done(err)
	return out, err
}

func (c *counting) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error) {
	if err := c.Fire(); err != nil {
		return nil, err
	}
	out, err := c.API.Patch(ctx, name, pt, data, opts, sub...)
	c.Done(err)
	return out, err
}

// kubeTarget is one object name of one kind.
type kubeTarget struct {
	e    *env
	kind Kind
	name string
	api  *counting
}

func newTarget(t testing.TB, e *env, k Kind) *kubeTarget {
	return &kubeTarget{e: e, kind: k, name: fmt.Sprintf("sinktest-%d", names.Add(1)), api: &counting{API: e.dyn.Resource(k.Resource)}}
}

func (k *kubeTarget) opts() Options {
	return Options{Name: k.name, Labels: "pdsafelist.io/list=pagerduty"}
}

func (k *kubeTarget) open(t testing.TB) *Object {
	t.Helper()
	s, err := New(k.kind, k.api, k.opts(), "test", sink.Env{OwnerID: "sinktest"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *kubeTarget) client() dynamic.ResourceInterface { return k.e.dyn.Resource(k.kind.Resource) }

// get is the object, or nil.
func (k *kubeTarget) get(t testing.TB) *unstructured.Unstructured {
	t.Helper()
	obj, err := k.client().Get(context.Background(), k.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// cidrs is the object's list as stored.
func (k *kubeTarget) cidrs(t testing.TB) []string {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		t.Fatalf("no %s %s", k.kind.Kind, k.name)
	}
	return stringList(obj, k.kind.Field)
}

// edit changes the object by hand, as kubectl edit would.
func (k *kubeTarget) edit(t testing.TB, change func(obj *unstructured.Unstructured)) {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		t.Fatalf("no %s to edit", k.kind.Kind)
	}
	change(obj)
	if _, err := k.client().Update(context.Background(), obj, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
}

// snapshot renders the object without its name and server metadata.
func (k *kubeTarget) snapshot(t testing.TB) string {
	t.Helper()
	obj := k.get(t)
	if obj == nil {
		return "no " + k.kind.Kind
	}
	var b strings.Builder
	for _, key := range slices.Sorted(maps.Keys(obj.GetLabels())) {
		fmt.Fprintf(&b, "label %s=%s\n", key, obj.GetLabels()[key])
	}
	for _, key := range slices.Sorted(maps.Keys(obj.GetAnnotations())) {
		fmt.Fprintf(&b, "annotation %s=%s\n", key, obj.GetAnnotations()[key])
	}
	spec, err := json.MarshalIndent(obj.Object["spec"], "", "  ")
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
			return New(k.kind, k.api, o, "test", env)
		}
	}
	return &sinktest.Target{
		Open:     func(t testing.TB) sink.Sink { return k.open(t) },
		Writes:   func(testing.TB) int { return k.api.Count() },
		Snapshot: k.snapshot,
		InjectOwned: func(t testing.TB, e plan.Entry) {
			k.edit(t, func(obj *unstructured.Unstructured) {
				rec, ok := decodeRecord(obj.GetAnnotations()[kubeobj.SetsAnnot])
				if !ok {
					t.Fatal("the record does not parse before the injection")
				}
				var entries []plan.Entry
				for p, set := range rec {
					entries = append(entries, plan.Entry{Set: set, Prefix: p})
				}
				want := k.open(t).object(append(entries, plan.Entry{Set: e.Set, Prefix: e.Prefix}))
				obj.SetAnnotations(want.GetAnnotations())
				obj.Object["spec"] = want.Object["spec"]
			})
		},
		// Delete one CIDR by hand; the record still names it.
		Drift: func(t testing.TB) {
			k.edit(t, func(obj *unstructured.Unstructured) {
				list, _, _ := unstructured.NestedSlice(obj.Object, k.kind.Field...)
				if len(list) == 0 {
					t.Fatal("no CIDR to remove")
				}
				if err := unstructured.SetNestedSlice(obj.Object, list[1:], k.kind.Field...); err != nil {
					t.Fatal(err)
				}
			})
		},
		// The record rewritten by hand into prose; the list stays.
		Unlabel: func(t testing.TB) {
			k.edit(t, func(obj *unstructured.Unstructured) {
				a := obj.GetAnnotations()
				a[kubeobj.SetsAnnot] = "PagerDuty webhooks - managed by pdsafelist"
				obj.SetAnnotations(a)
			})
		},
		FailNext: func(testing.TB) { k.api.Arm() },
		Tamper: map[string]func(testing.TB){
			"label-removed": func(t testing.TB) {
				k.edit(t, func(obj *unstructured.Unstructured) {
					l := obj.GetLabels()
					delete(l, kubeobj.ManagedByLabel)
					obj.SetLabels(l)
				})
			},
			"other-owner": func(t testing.TB) {
				k.edit(t, func(obj *unstructured.Unstructured) {
					a := obj.GetAnnotations()
					a[kubeobj.OwnerAnnot] = "someone-else"
					obj.SetAnnotations(a)
				})
			},
			"foreign-object": func(t testing.TB) { k.replaceForeign(t) },
		},
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id":        hostile(func(_ *Options, env *sink.Env, v string) { env.OwnerID = v }),
			"owner_id option": hostile(func(o *Options, _ *sink.Env, v string) { o.OwnerID = v }),
			"labels":          hostile(func(o *Options, _ *sink.Env, v string) { o.Labels = "app=" + v }),
			"kubeconfig":      hostile(func(o *Options, _ *sink.Env, v string) { o.Kubeconfig = v }),
			"context":         hostile(func(o *Options, _ *sink.Env, v string) { o.Context = v }),
			"name":            hostile(func(o *Options, _ *sink.Env, v string) { o.Name = v }),
		},
	}
}

// foreign is an object of the name another tool made.
func (k *kubeTarget) foreign() *unstructured.Unstructured {
	obj := &unstructured.Unstructured{Object: map[string]any{}}
	obj.SetAPIVersion(k.kind.Resource.GroupVersion().String())
	obj.SetKind(k.kind.Kind)
	obj.SetName(k.name)
	obj.SetLabels(map[string]string{kubeobj.ManagedByLabel: "helm"})
	_ = unstructured.SetNestedSlice(obj.Object, []any{"10.0.0.0/8"}, k.kind.Field...)
	return obj
}

// replaceForeign deletes the object and creates one another tool owns
// under the same name.
func (k *kubeTarget) replaceForeign(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := k.client().Delete(ctx, k.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := k.client().Create(ctx, k.foreign(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
