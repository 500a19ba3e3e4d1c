package kubecidr

import (
	"context"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

// The unprivileged user is refused with one line that says what to grant,
// and nothing is written; bound to the shipped ClusterRole (create on the
// resource, get and patch on the one name), it syncs, re-runs without a
// write and shrinks.
func testRBAC(t *testing.T, e *env, kind Kind) {
	k := newTarget(t, e, kind)
	user, err := dynamic.NewForConfig(e.c.UserConfig())
	if err != nil {
		t.Fatal(err)
	}
	k.api = &counting{API: user.Resource(kind.Resource)}
	d := sets(pfx("54.1.1.1/32", "54.1.1.2/32"), pfx("193.0.2.10/32"))
	_, err = sinktest.Sync(context.Background(), step(k.open(t)), d)
	if err == nil {
		t.Fatal("the unprivileged user synced without a ClusterRole")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "forbidden") || !strings.Contains(msg, kind.RBAC) {
		t.Errorf("refusal %q: want one line saying it is forbidden and what to grant", msg)
	}
	t.Logf("refused: %v", err)
	if k.get(t) != nil {
		t.Error("an object was created without the ClusterRole")
	}

	role, binding := loadRBAC(t, "../../../"+kind.RBAC)
	group, res := []string{kind.Resource.Group}, []string{kind.Resource.Resource}
	want := []rbacv1.PolicyRule{
		{APIGroups: group, Resources: res, Verbs: []string{"create"}},
		{APIGroups: group, Resources: res, ResourceNames: []string{"pagerduty"}, Verbs: []string{"get", "patch"}},
	}
	if !slices.EqualFunc(role.Rules, want, func(a, b rbacv1.PolicyRule) bool {
		return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) &&
			slices.Equal(a.ResourceNames, b.ResourceNames) && len(a.NonResourceURLs) == 0
	}) {
		t.Errorf("role rules %+v, want %+v", role.Rules, want)
	}
	// The file says to put the sink's NAME in resourceNames.
	role.Rules[1].ResourceNames = []string{k.name}
	binding.Subjects = []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: string(kubetest.Unprivileged)}}
	admin, err := kubernetes.NewForConfig(e.c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = kubetest.Authorized(func() error {
		_, err := sinktest.Sync(ctx, step(k.open(t)), d)
		return err
	})
	if err != nil {
		t.Fatalf("with the ClusterRole: %v", err)
	}
	rv := k.get(t).GetResourceVersion()
	w := k.api.Count()
	if p := sinktest.MustSync(t, step(k.open(t)), d); p.HasChanges() || k.api.Count() != w || k.get(t).GetResourceVersion() != rv {
		t.Errorf("re-run as the user: plan add %v remove %v drift %q, %d writes", p.Add, p.Remove, p.Drift, k.api.Count()-w)
	}
	d = sets(pfx("54.1.1.1/32"), pfx("193.0.2.10/32"))
	if p := sinktest.MustSync(t, step(k.open(t)), d); len(p.Remove) != 1 {
		t.Errorf("shrink as the user removes %v", p.Remove)
	}
	if got := k.cidrs(t); !slices.Equal(got, []string{"54.1.1.1/32", "193.0.2.10/32"}) {
		t.Errorf("after the shrink as the user: %v", got)
	}
	// Another name is not the user's to read.
	other := newTarget(t, e, kind)
	other.api = &counting{API: user.Resource(kind.Resource)}
	if _, err := other.open(t).Current(ctx); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("read of %s outside resourceNames: %v", other.name, err)
	}
}

// loadRBAC reads a shipped ClusterRole and ClusterRoleBinding.
func loadRBAC(t *testing.T, file string) (*rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding) {
	t.Helper()
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	kubetest.LoadManifests(t, file, &role, &binding)
	if role.Kind != "ClusterRole" || binding.Kind != "ClusterRoleBinding" || binding.RoleRef.Name != role.Name {
		t.Fatalf("%s: kinds %q and %q, binding to %q: want a ClusterRole and a ClusterRoleBinding to it", file, role.Kind, binding.Kind, binding.RoleRef.Name)
	}
	return &role, &binding
}
