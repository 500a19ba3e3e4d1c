package k8singress

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
	Type: "k8s-ingress-annotation",
	Skip: map[sinktest.Case]string{
		sinktest.ForeignCovering: "the annotation holds only pdsafelist's prefixes: a hand-written list refuses the Ingress whole, so there is no foreign entry beside ours",
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
	// Two Ingresses picked by a selector beside one it leaves alone, and
	// one Ingress by name.
	t.Run("conformance-selector", func(t *testing.T) {
		h := harness
		h.New = func(t testing.TB) *sinktest.Target { return newTarget(t, admin, true).target() }
		sinktest.Run(t, h)
	})
	t.Run("conformance-name", func(t *testing.T) {
		h := harness
		h.New = func(t testing.TB) *sinktest.Target { return newTarget(t, admin, false).target() }
		sinktest.Run(t, h)
	})
	t.Run("rerun-writes-nothing", func(t *testing.T) { testRerun(t, admin) })
	t.Run("only-our-two-annotations-change", func(t *testing.T) { testFieldOwnership(t, admin) })
	t.Run("shrink-removes-the-retired-prefix", func(t *testing.T) { testShrink(t, admin) })
	t.Run("hand-written-allow-list-refused", func(t *testing.T) { testForeign(t, admin) })
	t.Run("selector-matches-nothing", func(t *testing.T) { testNoMatch(t, admin) })
	t.Run("new-ingress-selected", func(t *testing.T) { testJoin(t, admin) })
	t.Run("egress-set-refused", func(t *testing.T) { testEgress(t, admin) })
	t.Run("size-guard", func(t *testing.T) { testSizeGuard(t, admin) })
	t.Run("never-empty", func(t *testing.T) { testNeverEmpty(t, admin) })
	t.Run("factory-kubeconfig", func(t *testing.T) { testFactory(t, c, admin) })
	t.Run("rbac-role", func(t *testing.T) { testRBAC(t, c, admin) })
}

var namespaces atomic.Int64

// counting passes calls through, counts the writes that reach the
// server, and when armed lets skip more writes through and fails the
// next one before sending it.
type counting struct {
	API
	mu     sync.Mutex
	writes int
	armed  bool
	skip   int
}

func (c *counting) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*networkingv1.Ingress, error) {
	c.mu.Lock()
	if c.armed {
		if c.skip == 0 {
			c.armed = false
			c.mu.Unlock()
			return nil, fmt.Errorf("sinktest: injected failure")
		}
		c.skip--
	}
	c.mu.Unlock()
	out, err := c.API.Patch(ctx, name, pt, data, opts, sub...)
	if err == nil {
		c.mu.Lock()
		c.writes++
		c.mu.Unlock()
	}
	return out, err
}

func (c *counting) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// kubeTarget is one namespace with Ingresses in it: web-a and web-b
// labelled app=web, and other, which no selector here picks. By name the
// target is web-a alone.
type kubeTarget struct {
	admin    kubernetes.Interface
	ns       string
	selector bool
	api      *counting
}

const selected = "app=web"

func newTarget(t testing.TB, admin kubernetes.Interface, selector bool) *kubeTarget {
	t.Helper()
	ns := fmt.Sprintf("ingress-%d", namespaces.Add(1))
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := &kubeTarget{admin: admin, ns: ns, selector: selector, api: &counting{API: admin.NetworkingV1().Ingresses(ns)}}
	k.create(t, "web-a", map[string]string{"app": "web"}, map[string]string{"example.com/team": "payments"})
	k.create(t, "web-b", map[string]string{"app": "web", "tier": "front"}, nil)
	k.create(t, "other", map[string]string{"app": "db"}, map[string]string{DefaultAnnotation: "10.0.0.0/8"})
	return k
}

// create makes an Ingress as a user's tooling would, field manager helm.
func (k *kubeTarget) create(t testing.TB, name string, labels, annotations map[string]string) {
	t.Helper()
	pathType := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: name + ".example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/hooks", PathType: &pathType,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 8080}}},
			}}}},
		}}},
	}
	if _, err := k.admin.NetworkingV1().Ingresses(k.ns).Create(context.Background(), ing, metav1.CreateOptions{FieldManager: "helm"}); err != nil {
		t.Fatal(err)
	}
}

func (k *kubeTarget) opts() Options {
	if k.selector {
		return Options{Ingress: k.ns, Selector: selected}
	}
	return Options{Ingress: k.ns + "/web-a"}
}

// targets are the Ingresses the sink writes.
func (k *kubeTarget) targets() []string {
	if k.selector {
		return []string{"web-a", "web-b"}
	}
	return []string{"web-a"}
}

func (k *kubeTarget) open(t testing.TB) *Annotator {
	t.Helper()
	s, err := New(k.api, k.opts(), "test", sink.Env{OwnerID: "sinktest"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get is the Ingress, or nil.
func (k *kubeTarget) get(t testing.TB, name string) *networkingv1.Ingress {
	t.Helper()
	obj, err := k.admin.NetworkingV1().Ingresses(k.ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// edit changes an Ingress by hand, as kubectl edit would.
func (k *kubeTarget) edit(t testing.TB, name string, change func(obj *networkingv1.Ingress)) {
	t.Helper()
	obj := k.get(t, name)
	if obj == nil {
		t.Fatalf("no Ingress %s to edit", name)
	}
	if obj.Annotations == nil {
		obj.Annotations = map[string]string{}
	}
	change(obj)
	if _, err := k.admin.NetworkingV1().Ingresses(k.ns).Update(context.Background(), obj, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
}

// snapshot renders every Ingress of the namespace without what differs
// between targets or writes (namespace, uid, resourceVersion, managed
// fields).
func (k *kubeTarget) snapshot(t testing.TB) string {
	t.Helper()
	list, err := k.admin.NetworkingV1().Ingresses(k.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, obj := range list.Items {
		fmt.Fprintf(&b, "Ingress %s\n", obj.Name)
		for _, key := range slices.Sorted(maps.Keys(obj.Labels)) {
			fmt.Fprintf(&b, "  label %s=%s\n", key, obj.Labels[key])
		}
		for _, key := range slices.Sorted(maps.Keys(obj.Annotations)) {
			fmt.Fprintf(&b, "  annotation %s=%s\n", key, obj.Annotations[key])
		}
		spec, err := json.Marshal(obj.Spec)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  spec %s\n", spec)
	}
	return b.String()
}

// everyTarget edits each Ingress the sink writes.
func (k *kubeTarget) everyTarget(t testing.TB, change func(obj *networkingv1.Ingress)) {
	t.Helper()
	for _, name := range k.targets() {
		k.edit(t, name, change)
	}
}

func (k *kubeTarget) target() *sinktest.Target {
	hostile := func(with func(o *Options, env *sink.Env, v string)) func(testing.TB, string) (sink.Sink, error) {
		return func(_ testing.TB, v string) (sink.Sink, error) {
			o, env := k.opts(), sink.Env{OwnerID: "sinktest"}
			with(&o, &env, v)
			return New(k.api, o, "test", env)
		}
	}
	companion := Companion(DefaultAnnotation)
	tg := &sinktest.Target{
		IngressOnly: true,
		Open:        func(t testing.TB) sink.Sink { return k.open(t) },
		Writes:      func(testing.TB) int { return k.api.count() },
		Snapshot:    k.snapshot,
		InjectOwned: func(t testing.TB, e plan.Entry) {
			s := k.open(t)
			k.everyTarget(t, func(obj *networkingv1.Ingress) {
				rec, ok := decodeRecord(obj.Annotations[companion], DefaultAnnotation)
				if !ok {
					t.Fatal("the record does not parse before the injection")
				}
				obj.Annotations[DefaultAnnotation], obj.Annotations[companion] = s.render(append(rec.entries(), plan.Entry{Set: e.Set, Prefix: e.Prefix}))
			})
		},
		// One prefix deleted by hand from one Ingress; the record still
		// names it.
		Drift: func(t testing.TB) {
			k.edit(t, "web-a", func(obj *networkingv1.Ingress) {
				items := strings.Split(obj.Annotations[DefaultAnnotation], ",")
				obj.Annotations[DefaultAnnotation] = strings.Join(items[1:], ",")
			})
		},
		// The record rewritten by hand into prose; the list stays.
		Unlabel: func(t testing.TB) {
			k.everyTarget(t, func(obj *networkingv1.Ingress) {
				obj.Annotations[companion] = "PagerDuty webhooks - managed by pdsafelist"
			})
		},
		FailNext: func(testing.TB) {
			k.api.mu.Lock()
			k.api.armed, k.api.skip = true, len(k.targets())-1
			k.api.mu.Unlock()
		},
		Tamper: map[string]func(testing.TB){
			// The companion removed: the list looks hand-written now.
			"companion-removed": func(t testing.TB) {
				k.edit(t, "web-a", func(obj *networkingv1.Ingress) { delete(obj.Annotations, companion) })
			},
			// Another installation's owner id.
			"other-owner": func(t testing.TB) {
				k.edit(t, "web-a", func(obj *networkingv1.Ingress) {
					obj.Annotations[companion] = strings.Replace(obj.Annotations[companion], `"owner":"sinktest"`, `"owner":"someone-else"`, 1)
				})
			},
			// ingress-nginx's preferred key, hand-written: ours would be
			// ignored.
			"allowlist-shadows": func(t testing.TB) {
				k.edit(t, "web-a", func(obj *networkingv1.Ingress) {
					obj.Annotations["nginx.ingress.kubernetes.io/allowlist-source-range"] = "10.0.0.0/8"
				})
			},
		},
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id":        hostile(func(_ *Options, env *sink.Env, v string) { env.OwnerID = v }),
			"owner_id option": hostile(func(o *Options, _ *sink.Env, v string) { o.OwnerID = v }),
			"annotation":      hostile(func(o *Options, _ *sink.Env, v string) { o.Annotation = "example.com/" + v }),
			"kubeconfig":      hostile(func(o *Options, _ *sink.Env, v string) { o.Kubeconfig = v }),
			"context":         hostile(func(o *Options, _ *sink.Env, v string) { o.Context = v }),
			"ingress":         hostile(func(o *Options, _ *sink.Env, v string) { o.Ingress += v }),
		},
	}
	if k.selector {
		tg.Hostile["selector"] = hostile(func(o *Options, _ *sink.Env, v string) { o.Selector = "app=" + v })
		// An Ingress with a hand-written list joins the selection.
		tg.Tamper["foreign-ingress-selected"] = func(t testing.TB) {
			k.create(t, "web-c", map[string]string{"app": "web"}, map[string]string{DefaultAnnotation: "10.0.0.0/8"})
		}
	} else {
		// The named Ingress deleted: the sink never creates one.
		tg.Tamper["ingress-deleted"] = func(t testing.TB) {
			if err := k.admin.NetworkingV1().Ingresses(k.ns).Delete(context.Background(), "web-a", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tg
}
