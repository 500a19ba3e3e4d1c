package k8singress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
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

// webhooks is the one ingress set most tests route.
func webhooks(ps ...string) []plan.DesiredSet {
	return []plan.DesiredSet{{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: pfx(ps...)}}
}

func step(s sink.Sink, d []plan.DesiredSet) sink.Step {
	known := make([]string, len(d))
	for i, ds := range d {
		known[i] = ds.Name
	}
	return sink.Step{Sink: s, Limits: plan.DefaultLimits, Known: known, Guards: plan.DefaultRunGuards}
}

// rvs is each target Ingress's resourceVersion.
func (k *kubeTarget) rvs(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{"web-a", "web-b", "other"} {
		if obj := k.get(t, name); obj != nil {
			out[name] = obj.ResourceVersion
		}
	}
	return out
}

// A sync sets the list and its record on the selected Ingresses only; a
// second run plans nothing, sends nothing and leaves every
// resourceVersion as it was.
func testRerun(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, true)
	d := webhooks("44.242.69.192/32", "2600:1f14:d0c:9d00::a1/128", "193.0.2.10/32", "193.0.2.0/24")
	sinktest.MustSync(t, step(k.open(t), d), d)
	companion := Companion(DefaultAnnotation)
	for _, name := range k.targets() {
		obj := k.get(t, name)
		// Not aggregated: each entry reads back as written.
		if got, want := obj.Annotations[DefaultAnnotation], "44.242.69.192/32,193.0.2.0/24,193.0.2.10/32,2600:1f14:d0c:9d00::a1/128"; got != want {
			t.Errorf("%s: %s = %q, want %q", name, DefaultAnnotation, got, want)
		}
		rec, ok := decodeRecord(obj.Annotations[companion], DefaultAnnotation)
		if !ok || rec.Owner != "sinktest" || len(rec.Sets["webhooks"]) != 4 {
			t.Errorf("%s: record %q", name, obj.Annotations[companion])
		}
	}
	if other := k.get(t, "other"); other.Annotations[DefaultAnnotation] != "10.0.0.0/8" || other.Annotations[companion] != "" {
		t.Errorf("the Ingress the selector does not pick changed: %v", other.Annotations)
	}
	before, w := k.rvs(t), k.api.count()
	if p := sinktest.MustSync(t, step(k.open(t), d), d); p.HasChanges() {
		t.Errorf("the second run plans add %v remove %v drift %q", p.Add, p.Remove, p.Drift)
	}
	if n := k.api.count() - w; n != 0 {
		t.Errorf("the second run made %d writes", n)
	}
	if after := k.rvs(t); !maps.Equal(before, after) {
		t.Errorf("resourceVersions %v after the second run, were %v", after, before)
	}
}

// managed is one manager's field set of an Ingress, as paths.
func managed(t *testing.T, obj *networkingv1.Ingress, manager string) []string {
	t.Helper()
	var out []string
	for _, m := range obj.ManagedFields {
		if m.Manager != manager || m.FieldsV1 == nil {
			continue
		}
		var tree map[string]any
		if err := json.Unmarshal(m.FieldsV1.Raw, &tree); err != nil {
			t.Fatal(err)
		}
		var walk func(prefix string, n map[string]any)
		walk = func(prefix string, n map[string]any) {
			for k, v := range n {
				if k == "." {
					continue
				}
				child, _ := v.(map[string]any)
				if len(child) == 0 {
					out = append(out, prefix+k)
				} else {
					walk(prefix+k+"/", child)
				}
			}
		}
		walk("", tree)
	}
	slices.Sort(out)
	return out
}

// The apply sets two annotations and nothing else: labels, spec and the
// other annotations are as they were, and stay owned by their manager;
// pdsafelist's field set is exactly the two keys.
func testFieldOwnership(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, false)
	before := k.get(t, "web-a")
	helmBefore := managed(t, before, "helm")
	d := webhooks("44.242.69.192/32")
	sinktest.MustSync(t, step(k.open(t), d), d)
	// And a change after the first write, which must not widen it.
	d = webhooks("44.242.69.192/32", "44.242.69.193/32")
	sinktest.MustSync(t, step(k.open(t), d), d)
	after := k.get(t, "web-a")
	if !maps.Equal(after.Labels, before.Labels) {
		t.Errorf("labels %v, were %v", after.Labels, before.Labels)
	}
	if a, b := mustJSON(t, after.Spec), mustJSON(t, before.Spec); a != b {
		t.Errorf("spec changed:\n%s\nwas\n%s", a, b)
	}
	companion := Companion(DefaultAnnotation)
	others := maps.Clone(after.Annotations)
	delete(others, DefaultAnnotation)
	delete(others, companion)
	if !maps.Equal(others, before.Annotations) {
		t.Errorf("other annotations %v, were %v", others, before.Annotations)
	}
	if got := after.Annotations[DefaultAnnotation]; got != "44.242.69.192/32,44.242.69.193/32" {
		t.Errorf("%s = %q", DefaultAnnotation, got)
	}
	want := []string{"f:metadata/f:annotations/f:" + companion, "f:metadata/f:annotations/f:" + DefaultAnnotation}
	slices.Sort(want)
	if got := managed(t, after, kubeobj.FieldManager); !slices.Equal(got, want) {
		t.Errorf("pdsafelist manages %v, want exactly %v", got, want)
	}
	if got := managed(t, after, "helm"); !slices.Equal(got, helmBefore) || !slices.Contains(got, "f:metadata/f:annotations/f:example.com/team") || !slices.Contains(got, "f:spec/f:rules") {
		t.Errorf("helm manages %v after the syncs, managed %v before", got, helmBefore)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A shrink removes exactly the retired prefix, on every selected Ingress.
func testShrink(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, true)
	d := webhooks("54.1.1.1/32", "54.1.1.2/32", "2001:db9::5/128")
	sinktest.MustSync(t, step(k.open(t), d), d)
	d = webhooks("54.1.1.1/32", "2001:db9::5/128")
	p := sinktest.MustSync(t, step(k.open(t), d), d)
	if len(p.Add) != 0 || len(p.Remove) != 1 || p.Remove[0].Prefix != netip.MustParsePrefix("54.1.1.2/32") {
		t.Errorf("plan add %v remove %v; want 54.1.1.2/32 removed only", p.Add, p.Remove)
	}
	for _, name := range k.targets() {
		if got := k.get(t, name).Annotations[DefaultAnnotation]; got != "54.1.1.1/32,2001:db9::5/128" {
			t.Errorf("%s after the shrink: %q", name, got)
		}
	}
}

// An Ingress that already has a hand-written list is refused with one
// line naming it, and left as it was; so is an empty one.
func testForeign(t *testing.T, admin kubernetes.Interface) {
	for _, value := range []string{"10.0.0.0/8", ""} {
		k := newTarget(t, admin, false)
		k.edit(t, "web-a", func(obj *networkingv1.Ingress) { obj.Annotations[DefaultAnnotation] = value })
		before := k.rvs(t)
		d := webhooks("54.1.1.1/32")
		_, err := sinktest.Sync(context.Background(), step(k.open(t), d), d)
		if err == nil {
			t.Fatalf("sync over a hand-written list %q succeeded", value)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, k.ns+"/web-a") || !strings.Contains(msg, DefaultAnnotation) {
			t.Errorf("refusal %q: want one line naming %s/web-a and the annotation", msg, k.ns)
		}
		if after := k.rvs(t); !maps.Equal(before, after) || k.api.count() != 0 {
			t.Errorf("the Ingress changed (resourceVersions %v -> %v, %d writes)", before, after, k.api.count())
		}
		if got := k.get(t, "web-a").Annotations[DefaultAnnotation]; got != value {
			t.Errorf("hand-written list now %q", got)
		}
	}
}

// A selector that matches nothing is a warning, as a filter that selects
// nothing is to external-dns: no error, no change planned, no write.
func testNoMatch(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, true)
	var logs bytes.Buffer
	o := Options{Ingress: k.ns, Selector: "app=nothing"}
	s, err := New(k.api, o, "test", sink.Env{OwnerID: "sinktest", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	before := k.snapshot(t)
	d := webhooks("54.1.1.1/32")
	p := sinktest.MustSync(t, step(s, d), d)
	if p.HasChanges() || k.api.count() != 0 || k.snapshot(t) != before {
		t.Errorf("plan add %v drift %q, %d writes", p.Add, p.Drift, k.api.count())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "app=nothing") || !strings.Contains(logs.String(), k.ns) {
		t.Errorf("no warning naming the selector and namespace: %q", logs.String())
	}
}

// An Ingress that starts matching the selector gets the list on the next
// run, with one write; the others are not written again.
func testJoin(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, true)
	d := webhooks("54.1.1.1/32", "54.1.1.2/32")
	sinktest.MustSync(t, step(k.open(t), d), d)
	before := k.rvs(t)
	k.create(t, "web-c", map[string]string{"app": "web"}, nil)
	w := k.api.count()
	p := sinktest.MustSync(t, step(k.open(t), d), d)
	if len(p.Add)+len(p.Remove) != 0 || len(p.Drift) != 1 || !strings.Contains(p.Drift[0], "web-c") {
		t.Errorf("plan add %v remove %v drift %q; want one drift naming web-c", p.Add, p.Remove, p.Drift)
	}
	if n := k.api.count() - w; n != 1 {
		t.Errorf("%d writes, want 1 (web-c)", n)
	}
	if after := k.rvs(t); !maps.Equal(before, after) {
		t.Errorf("the Ingresses that held the list were written again: %v -> %v", before, after)
	}
	if got := k.get(t, "web-c").Annotations[DefaultAnnotation]; got != "54.1.1.1/32,54.1.1.2/32" {
		t.Errorf("web-c: %q", got)
	}
}

// An egress set is refused with one line naming it, before any write.
func testEgress(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, false)
	d := append(webhooks("54.1.1.1/32"), plan.DesiredSet{Name: "events", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: pfx("54.2.2.2/32")})
	_, err := sinktest.Sync(context.Background(), step(k.open(t), d), d)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "set events is egress") {
		t.Errorf("sync with an egress set: %v", err)
	}
	if k.api.count() != 0 {
		t.Errorf("%d writes", k.api.count())
	}
}

// guardRefusal wants err to be this sink's guard, its message holding
// every one of want.
func guardRefusal(t *testing.T, err error, want ...string) {
	t.Helper()
	var g *plan.GuardError
	if !errors.As(err, &g) || g.Guard != plan.GuardIngressAnnotation {
		t.Fatalf("want a %s guard refusal, got %v", plan.GuardIngressAnnotation, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not say %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("refusal is not one line: %q", err)
	}
}

// Too many prefixes, or annotations past the API server's 256 KiB, are
// refused before anything is written, naming the sink and the count.
func testSizeGuard(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, false)
	o := k.opts()
	o.MaxPrefixes = 3
	s, err := New(k.api, o, "test", sink.Env{OwnerID: "sinktest"})
	if err != nil {
		t.Fatal(err)
	}
	d := webhooks("54.1.1.1/32", "54.1.1.2/32", "54.1.1.3/32", "54.1.1.4/32")
	_, err = sinktest.Sync(context.Background(), step(s, d), d)
	guardRefusal(t, err, s.Name(), "4 prefixes", "max_prefixes 3")

	// 254 KiB of someone else's annotation leaves 2 KiB: about 60
	// prefixes twice over (list and record); 200 do not fit.
	k.edit(t, "web-a", func(obj *networkingv1.Ingress) {
		obj.Annotations["example.com/blob"] = strings.Repeat("x", 254<<10)
	})
	var many []string
	for i := range 200 {
		many = append(many, netip.AddrFrom4([4]byte{54, 1, byte(i / 250), byte(i % 250)}).String()+"/32")
	}
	d = webhooks(many...)
	before := k.rvs(t)
	_, err = sinktest.Sync(context.Background(), step(k.open(t), d), d)
	guardRefusal(t, err, k.open(t).Name(), "200 prefixes", k.ns+"/web-a", "262144")
	if after := k.rvs(t); !maps.Equal(before, after) || k.api.count() != 0 {
		t.Errorf("refused plans wrote: %v -> %v, %d writes", before, after, k.api.count())
	}
	// What the guard lets through, the server takes.
	d = webhooks(many[:20]...)
	sinktest.MustSync(t, step(k.open(t), d), d)
}

// The list is never emptied: ingress-nginx reads an empty list as no
// restriction.
func testNeverEmpty(t *testing.T, admin kubernetes.Interface) {
	k := newTarget(t, admin, false)
	// Nothing to allow and nothing held: nothing to do, and no refusal.
	if p := sinktest.MustSync(t, step(k.open(t), webhooks()), webhooks()); p.HasChanges() || k.api.count() != 0 {
		t.Errorf("an empty set over an untouched Ingress: add %v drift %q, %d writes", p.Add, p.Drift, k.api.count())
	}
	d := webhooks("54.1.1.1/32")
	sinktest.MustSync(t, step(k.open(t), d), d)
	rv := k.get(t, "web-a").ResourceVersion
	d = webhooks()
	_, err := sinktest.Sync(context.Background(), step(k.open(t), d), d)
	guardRefusal(t, err, "empty", "everyone")
	if obj := k.get(t, "web-a"); obj.ResourceVersion != rv || obj.Annotations[DefaultAnnotation] != "54.1.1.1/32" {
		t.Errorf("the refused plan changed the Ingress: %q", obj.Annotations[DefaultAnnotation])
	}
}

// The factory finds the cluster through kubeconfig= and writes the
// annotation annotation= names.
func testFactory(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	k := newTarget(t, admin, true)
	reg := sink.Registry{Type: Factory}
	spec, err := reg.ParseFlag(Type + ":" + k.ns + "?selector=tier=front,app=web&annotation=haproxy.org/allow-list&kubeconfig=" + c.Kubeconfig(t, kubetest.Admin))
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{OwnerID: "factory"})
	if err != nil {
		t.Fatal(err)
	}
	if want := Type + ":" + k.ns + "?selector=app=web,tier=front&annotation=haproxy.org/allow-list"; s.Name() != want {
		t.Errorf("name %q, want %q", s.Name(), want)
	}
	d := webhooks("54.1.1.1/32")
	sinktest.MustSync(t, step(s, d), d)
	if got := k.get(t, "web-b").Annotations["haproxy.org/allow-list"]; got != "54.1.1.1/32" {
		t.Errorf("web-b haproxy.org/allow-list = %q", got)
	}
	if got := k.get(t, "web-a").Annotations; got["haproxy.org/allow-list"] != "" || got[DefaultAnnotation] != "" {
		t.Errorf("web-a, which lacks tier=front, was written: %v", got)
	}
	// Opening checks options only; a missing kubeconfig fails the
	// first read, on one line naming it.
	spec, err = reg.ParseFlag(Type + ":" + k.ns + "/web-a?kubeconfig=/nonexistent/kubeconfig")
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
		Type + ":" + k.ns,
		Type + ":" + k.ns + "/web-a?selector=app=web",
		Type + ":" + k.ns + "?selector=app",
		Type + ":" + k.ns + "/Web_A",
		Type + ":" + k.ns + "/web-a?annotation=pdsafelist.io/owner",
		Type + ":" + k.ns + "/web-a?annotation=not%20a%20key",
		Type + ":" + k.ns + "/web-a?annotation=a/b/c",
		Type + ":" + k.ns + "/web-a?max_prefixes=-1",
		Type + ":" + k.ns + "/web-a?pod_selector=app=web",
	} {
		spec, err := reg.ParseFlag(bad)
		if err == nil {
			_, err = reg.Open(spec, sink.Env{})
		}
		if err == nil {
			t.Errorf("%s: accepted", bad)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: refusal not one line: %q", bad, err)
		}
	}
}
