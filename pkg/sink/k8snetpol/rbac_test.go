package k8snetpol

import (
	"context"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

const rbacFile = "../../../scripts/k8s/rbac-networkpolicy.yaml"

// The unprivileged user is refused with one line that says what to grant,
// and nothing is written; bound to the shipped Role, which grants exactly
// get, create and patch on networkpolicies, it syncs, re-runs without a
// write and shrinks.
func testRBAC(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	k := newTarget(t, admin)
	user, err := kubernetes.NewForConfig(c.UserConfig())
	if err != nil {
		t.Fatal(err)
	}
	k.api = &counting{API: user.NetworkingV1().NetworkPolicies(k.ns)}
	d := sets(pfx("54.1.1.1/32", "54.1.1.2/32"), pfx("193.0.2.10/32"))
	_, err = sinktest.Sync(context.Background(), step(k.open(t), d), d)
	if err == nil {
		t.Fatal("the unprivileged user synced without a Role")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "rbac-networkpolicy.yaml") {
		t.Errorf("refusal %q: want one line saying it is forbidden and what to grant", msg)
	}
	t.Logf("refused: %v", err)
	if k.get(t) != nil {
		t.Error("a NetworkPolicy was created without the Role")
	}

	role, binding := loadRBAC(t)
	want := []rbacv1.PolicyRule{{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "create", "patch"}}}
	if !slices.EqualFunc(role.Rules, want, func(a, b rbacv1.PolicyRule) bool {
		return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) &&
			len(a.ResourceNames)+len(a.NonResourceURLs) == 0
	}) {
		t.Errorf("role rules %+v, want %+v", role.Rules, want)
	}
	role.Namespace, binding.Namespace = k.ns, k.ns
	binding.Subjects = []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: string(kubetest.Unprivileged)}}
	ctx := context.Background()
	if _, err := admin.RbacV1().Roles(k.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(k.ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = kubetest.Authorized(func() error {
		_, err := sinktest.Sync(ctx, step(k.open(t), d), d)
		return err
	})
	if err != nil {
		t.Fatalf("with the Role: %v", err)
	}
	rv := k.get(t).ResourceVersion
	w := k.api.Count()
	if p := sinktest.MustSync(t, step(k.open(t), d), d); p.HasChanges() || k.api.Count() != w || k.get(t).ResourceVersion != rv {
		t.Errorf("re-run as the user: plan add %v remove %v drift %q, %d writes", p.Add, p.Remove, p.Drift, k.api.Count()-w)
	}
	d = sets(pfx("54.1.1.1/32"), pfx("193.0.2.10/32"))
	if p := sinktest.MustSync(t, step(k.open(t), d), d); len(p.Remove) != 1 {
		t.Errorf("shrink as the user removes %v", p.Remove)
	}
	st, err := k.open(t).Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.Owned); got != 2 {
		t.Errorf("after the shrink the user reads %d entries, want 2: %v", got, st.Owned)
	}
}

// loadRBAC reads the shipped Role and RoleBinding.
func loadRBAC(t *testing.T) (*rbacv1.Role, *rbacv1.RoleBinding) {
	t.Helper()
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	kubetest.LoadManifests(t, rbacFile, &role, &binding)
	if role.Kind != "Role" || binding.Kind != "RoleBinding" || binding.RoleRef.Name != role.Name {
		t.Fatalf("%s: kinds %q and %q, binding to %q: want a Role and a RoleBinding to it", rbacFile, role.Kind, binding.Kind, binding.RoleRef.Name)
	}
	return &role, &binding
}
