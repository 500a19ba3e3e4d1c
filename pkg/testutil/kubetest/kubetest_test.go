package kubetest_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

const ns = "default"

// TestCluster starts one cluster and runs every case against it; after
// the cluster's test ends, none of its processes may be left.
func TestCluster(t *testing.T) {
	var pgids []string
	t.Run("cluster", func(t *testing.T) {
		start := time.Now()
		c := kubetest.Start(t)
		t.Logf("ready in %v", time.Since(start).Round(time.Millisecond))
		for _, pid := range c.Pgids {
			pgids = append(pgids, strconv.Itoa(pid))
		}
		admin := clientset(t, c.AdminConfig())
		t.Run("ValidPolicyAccepted", func(t *testing.T) { validPolicyAccepted(t, admin) })
		t.Run("HostBitsRefused", func(t *testing.T) { hostBitsRefused(t, admin) })
		t.Run("RBAC", func(t *testing.T) { rbac(t, admin, clientset(t, c.UserConfig())) })
		t.Run("ServerSideApplyIdempotent", func(t *testing.T) { serverSideApply(t, admin) })
		t.Run("Kubeconfig", func(t *testing.T) { kubeconfig(t, c) })
	})
	if t.Failed() || len(pgids) == 0 {
		return // skipped, or failed before the processes were known
	}
	if live := testutil.LiveInGroups(pgids...); len(live) > 0 {
		t.Errorf("left running after cleanup: %v", live)
	}
}

func validPolicyAccepted(t *testing.T, admin kubernetes.Interface) {
	got, err := admin.NetworkingV1().NetworkPolicies(ns).Create(context.Background(),
		policy("pdsafelist-ok", "44.242.69.192/31"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got.UID == "" || got.ResourceVersion == "" {
		t.Errorf("server did not set uid/resourceVersion: %+v", got.ObjectMeta)
	}
	if cidr := got.Spec.Ingress[0].From[0].IPBlock.CIDR; cidr != "44.242.69.192/31" {
		t.Errorf("stored cidr = %q", cidr)
	}
}

// The apiserver's own validation refuses a CIDR with host bits set; a
// fake clientset would store it.
func hostBitsRefused(t *testing.T, admin kubernetes.Interface) {
	_, err := admin.NetworkingV1().NetworkPolicies(ns).Create(context.Background(),
		policy("pdsafelist-hostbits", "44.242.69.192/24"), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create with host bits: got %v, want Invalid", err)
	}
	if !strings.Contains(err.Error(), "ipBlock.cidr") {
		t.Errorf("error does not name the field: %v", err)
	}
}

func rbac(t *testing.T, admin, user kubernetes.Interface) {
	ctx := context.Background()
	_, err := user.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list as %s before the grant: got %v, want Forbidden", kubetest.Unprivileged, err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pdsafelist-read"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"networking.k8s.io"},
			Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list"}}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pdsafelist-read"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: string(kubetest.Unprivileged)}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer reads RBAC objects from its informer cache, so the
	// grant takes effect after a short delay.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = user.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err == nil || !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("list after the grant: %v", err)
	}
	// Exactly get and list: writing is still refused.
	_, err = user.NetworkingV1().NetworkPolicies(ns).Create(ctx, policy("pdsafelist-user", "44.242.69.192/31"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("create as %s: got %v, want Forbidden", kubetest.Unprivileged, err)
	}
}

// Applying the same object twice with one field manager is a no-op the
// second time: the resourceVersion does not move.
func serverSideApply(t *testing.T, admin kubernetes.Interface) {
	p := policy("pdsafelist-applied", "44.242.69.192/31")
	p.TypeMeta = metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	apply := func() *networkingv1.NetworkPolicy {
		t.Helper()
		got, err := admin.NetworkingV1().NetworkPolicies(ns).Patch(context.Background(), p.Name,
			types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "pdsafelist"})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return got
	}
	first, second := apply(), apply()
	if first.ResourceVersion != second.ResourceVersion {
		t.Errorf("resourceVersion moved on a repeated apply: %s -> %s", first.ResourceVersion, second.ResourceVersion)
	}
	if len(second.ManagedFields) != 1 || second.ManagedFields[0].Manager != "pdsafelist" {
		t.Errorf("managedFields = %+v, want one entry for pdsafelist", second.ManagedFields)
	}
}

// A kubeconfig written for each user reaches the server as that user.
func kubeconfig(t *testing.T, c *kubetest.Cluster) {
	for _, u := range []kubetest.User{kubetest.Admin, kubetest.Unprivileged} {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig(t, u))
		if err != nil {
			t.Fatal(err)
		}
		review, err := clientset(t, cfg).AuthenticationV1().SelfSubjectReviews().Create(context.Background(),
			&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: self-subject review: %v", u, err)
		}
		if got := review.Status.UserInfo.Username; got != string(u) {
			t.Errorf("kubeconfig for %s authenticates as %q", u, got)
		}
	}
}

func policy(name, cidr string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "pdsafelist"}},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr}}},
			}},
		},
	}
}

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
