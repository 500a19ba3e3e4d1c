package k8singress

import (
	"bytes"
	"context"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

const rbacFile = "../../../scripts/k8s/rbac-ingress-annotation.yaml"

// The unprivileged user is refused with one line that says what to grant,
// and nothing is written; bound to the shipped Role, which grants exactly
// get, list and patch on ingresses, it syncs by name and by selector,
// re-runs without a write and shrinks.
func testRBAC(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	user, err := kubernetes.NewForConfig(c.UserConfig())
	if err != nil {
		t.Fatal(err)
	}
	role, binding := loadRBAC(t)
	want := []rbacv1.PolicyRule{{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"get", "list", "patch"}}}
	if !slices.EqualFunc(role.Rules, want, func(a, b rbacv1.PolicyRule) bool {
		return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) &&
			len(a.ResourceNames)+len(a.NonResourceURLs) == 0
	}) {
		t.Errorf("role rules %+v, want %+v", role.Rules, want)
	}
	for _, selector := range []bool{false, true} {
		k := newTarget(t, admin, selector)
		k.api = &counting{API: user.NetworkingV1().Ingresses(k.ns)}
		d := webhooks("54.1.1.1/32", "54.1.1.2/32")
		before := k.rvs(t)
		_, err = sinktest.Sync(context.Background(), step(k.open(t), d), d)
		if err == nil {
			t.Fatal("the unprivileged user synced without a Role")
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "rbac-ingress-annotation.yaml") || !strings.Contains(msg, "get, list and patch") {
			t.Errorf("refusal %q: want one line saying it is forbidden and what to grant", msg)
		}
		t.Logf("refused: %v", err)
		if after := k.rvs(t); !maps.Equal(before, after) {
			t.Error("an Ingress changed without the Role")
		}

		r, b := role.DeepCopy(), binding.DeepCopy()
		r.Namespace, b.Namespace = k.ns, k.ns
		b.Subjects = []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: string(kubetest.Unprivileged)}}
		ctx := context.Background()
		if _, err := admin.RbacV1().Roles(k.ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().RoleBindings(k.ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The authorizer sees new bindings through its cache, a moment later.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err = sinktest.Sync(ctx, step(k.open(t), d), d)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("with the Role: %v", err)
		}
		rvs, w := k.rvs(t), k.api.count()
		if p := sinktest.MustSync(t, step(k.open(t), d), d); p.HasChanges() || k.api.count() != w || !maps.Equal(k.rvs(t), rvs) {
			t.Errorf("re-run as the user: plan add %v remove %v drift %q, %d writes", p.Add, p.Remove, p.Drift, k.api.count()-w)
		}
		d = webhooks("54.1.1.1/32")
		if p := sinktest.MustSync(t, step(k.open(t), d), d); len(p.Remove) != 1 {
			t.Errorf("shrink as the user removes %v", p.Remove)
		}
		for _, name := range k.targets() {
			if got := k.get(t, name).Annotations[DefaultAnnotation]; got != "54.1.1.1/32" {
				t.Errorf("%s after the user's shrink: %q", name, got)
			}
		}
	}
}

// loadRBAC reads the shipped Role and RoleBinding.
func loadRBAC(t *testing.T) (*rbacv1.Role, *rbacv1.RoleBinding) {
	t.Helper()
	data, err := os.ReadFile(rbacFile)
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(data, []byte("\n---\n"))
	if len(docs) != 2 {
		t.Fatalf("%s: %d documents, want a Role and a RoleBinding", rbacFile, len(docs))
	}
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	if err := yaml.UnmarshalStrict(docs[0], &role); err != nil || role.Kind != "Role" {
		t.Fatalf("%s: first document: kind %q, %v", rbacFile, role.Kind, err)
	}
	if err := yaml.UnmarshalStrict(docs[1], &binding); err != nil || binding.Kind != "RoleBinding" || binding.RoleRef.Name != role.Name {
		t.Fatalf("%s: second document: kind %q, role %q, %v", rbacFile, binding.Kind, binding.RoleRef.Name, err)
	}
	return &role, &binding
}
