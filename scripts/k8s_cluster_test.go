package scripts

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

// manifest is one document of a shipped file.
type manifest struct {
	file string
	obj  *unstructured.Unstructured
}

func (m manifest) String() string {
	return fmt.Sprintf("%s: %s %s/%s", m.file, m.obj.GetKind(), m.obj.GetNamespace(), m.obj.GetName())
}

// loadManifests reads every document of every scripts/k8s/*.yaml.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) < 3 {
		t.Fatalf("want the CronJob, DaemonSet and Deployment manifests, found %v", files)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw map[string]any
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(raw) == 0 {
				continue
			}
			out = append(out, manifest{file: f, obj: &unstructured.Unstructured{Object: raw}})
		}
	}
	return out
}

// releaseImage is the image goreleaser publishes, tagged with the release
// version as its {{ .Version }} writes it (no "v").
var releaseImage = regexp.MustCompile(`^ghcr\.io/pdsafelist/pdsafelist:[0-9]+\.[0-9]+\.[0-9]+$`)

// Every image in every shipped manifest is the release image, pinned to a
// release tag: never latest, never untagged.
func TestManifestImagesPinned(t *testing.T) {
	gr, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(gr, []byte("- ghcr.io/pdsafelist/pdsafelist\n")) || !bytes.Contains(gr, []byte(`- "{{ .Version }}"`)) {
		t.Fatal(".goreleaser.yaml no longer publishes ghcr.io/pdsafelist/pdsafelist tagged {{ .Version }}: update the manifests and this test")
	}
	images := 0
	for _, m := range loadManifests(t) {
		for _, path := range [][]string{
			{"spec", "template", "spec"},
			{"spec", "jobTemplate", "spec", "template", "spec"},
		} {
			pod, ok, _ := unstructured.NestedMap(m.obj.Object, path...)
			if !ok {
				continue
			}
			for _, key := range []string{"containers", "initContainers"} {
				cs, _, _ := unstructured.NestedSlice(pod, key)
				for _, c := range cs {
					image, _ := c.(map[string]any)["image"].(string)
					images++
					if !releaseImage.MatchString(image) {
						t.Errorf("%s: image %q: want ghcr.io/pdsafelist/pdsafelist:X.Y.Z, a release tag", m, image)
					}
				}
			}
		}
	}
	if images < 3 {
		t.Errorf("found %d images, want at least the CronJob's, the DaemonSet's and the Deployment's", images)
	}
}

// Every shipped manifest passes a server-side dry run against a real API
// server: schema, strict field validation, defaulting and admission
// (NamespaceLifecycle, Priority, RBAC escalation checks), not only a YAML
// decode. The namespaces the manifests use are created first.
func TestManifestsServerSideDryRun(t *testing.T) {
	c := kubetest.Start(t)
	ms := loadManifests(t)
	cfg := c.AdminConfig()
	admin := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	createNamespaces(t, admin, ms)
	ctx := context.Background()
	passed := 0
	for _, m := range ms {
		if m.obj.GetKind() == "Namespace" {
			passed++ // created above, for real
			continue
		}
		gvk := m.obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: %v", m, err)
			continue
		}
		_, err = dyn.Resource(mapping.Resource).Namespace(m.obj.GetNamespace()).Create(ctx, m.obj,
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
		if err != nil {
			t.Errorf("%s: server-side dry run: %v", m, err)
			continue
		}
		passed++
	}
	t.Logf("%d of %d documents passed a server-side dry run", passed, len(ms))
}

func createNamespaces(t *testing.T, admin kubernetes.Interface, ms []manifest) {
	t.Helper()
	names := map[string]bool{}
	for _, m := range ms {
		if m.obj.GetKind() == "Namespace" {
			names[m.obj.GetName()] = true
		} else if ns := m.obj.GetNamespace(); ns != "" {
			names[ns] = true
		}
	}
	for ns := range names {
		_, err := admin.CoreV1().Namespaces().Create(context.Background(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("namespace %s: %v", ns, err)
		}
	}
}

// The Deployment's RBAC is exactly what leader election, the state
// ConfigMap and its sink need: the Roles say no more than the list below,
// and the binary, run with the Deployment's own arguments as its
// ServiceAccount (a real token from the API server) bound by the shipped
// RoleBindings, syncs, takes and renews the Lease, writes the state and
// releases the Lease on SIGTERM.
func TestDeploymentRunsUnderItsRBAC(t *testing.T) {
	c := kubetest.Start(t)
	bin := testutil.BuildCommand(t)
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())
	var deploy appsv1.Deployment
	var config string
	roles := map[string][]rbacv1.PolicyRule{}
	all := loadManifests(t)
	var ms []manifest
	for _, m := range all {
		if m.file == filepath.Join("k8s", "deployment.yaml") {
			ms = append(ms, m)
		}
	}
	createNamespaces(t, admin, ms)
	for _, m := range ms {
		data, err := json.Marshal(m.obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		switch m.obj.GetKind() {
		case "Namespace":
			continue
		case "Deployment":
			if err := yaml.UnmarshalStrict(data, &deploy); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			config = m.obj.Object["data"].(map[string]any)["pdsafelist.yaml"].(string)
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict(data, &r); err != nil {
				t.Fatal(err)
			}
			roles[r.Namespace+"/"+r.Name] = r.Rules
		}
		createObject(t, c, m)
	}
	want := map[string][]rbacv1.PolicyRule{
		"pdsafelist/pdsafelist-replicas": {
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"pdsafelist"}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"pdsafelist-state"}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		},
		"default/pdsafelist-networkpolicy": {
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "create", "patch"}},
		},
	}
	if got, _ := json.Marshal(roles); !bytes.Equal(got, must(json.Marshal(want))) {
		t.Errorf("the Deployment's Roles grant\n%s\nwant exactly\n%s", got, must(json.Marshal(want)))
	}

	// The binary, with the Deployment's arguments, as its ServiceAccount.
	spec := deploy.Spec.Template.Spec
	if *deploy.Spec.Replicas != 2 || spec.ServiceAccountName == "" {
		t.Fatalf("deployment: %d replicas, service account %q", *deploy.Spec.Replicas, spec.ServiceAccountName)
	}
	kubeconfig := serviceAccountKubeconfig(t, c, admin, deploy.Namespace, spec.ServiceAccountName)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(cfgPath, testConfig(t, config), 0o644); err != nil {
		t.Fatal(err)
	}
	healthAddr := freeAddr(t)
	args := overrideArgs(spec.Containers[0].Args, map[string]string{
		"--config": cfgPath, "--state-dir": filepath.Join(dir, "state"),
		"--health-addr": healthAddr, "--interval": "2s", "--jitter": "0s",
	})
	leaseNS, leaseName := flagValue(t, args, "--leader-elect")
	stateNS, stateName := flagValue(t, args, "--state-configmap")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAME=pdsafelist-test-0", "HOME="+dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	runs := make(chan map[string]any, 1000)
	var logs bytes.Buffer
	var logsMu sync.Mutex
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logsMu.Lock()
			logs.Write(append(sc.Bytes(), '\n'))
			logsMu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && (m["msg"] == "sync finished" || m["level"] == "ERROR") {
				select {
				case runs <- m:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-exited
		if t.Failed() {
			logsMu.Lock()
			t.Logf("pdsafelist (%v) log:\n%s", err, logs.String())
			logsMu.Unlock()
		}
	})
	// Two runs: the first creates the policy and the state, the second
	// updates the state (its clock) through the named rule.
	ok := 0
	for timeout := time.After(60 * time.Second); ok < 2; {
		select {
		case m := <-runs:
			if m["msg"] != "sync finished" || m["exit_code"] != float64(0) {
				t.Fatalf("run under the shipped RBAC: %v", m)
			}
			ok++
		case err := <-exited:
			exited <- err
			t.Fatalf("pdsafelist exited: %v", err)
		case <-timeout:
			t.Fatalf("%d good runs in 60s", ok)
		}
	}
	lease, err := admin.CoordinationV1().Leases(leaseNS).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "pdsafelist-test-0" {
		t.Fatalf("lease: %v %+v", err, lease)
	}
	cm, err := admin.CoreV1().ConfigMaps(stateNS).Get(ctx, stateName, metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["state.json"], "54.1.1.1") {
		t.Fatalf("state ConfigMap: %v %v", err, cm)
	}
	if cm.ResourceVersion == "" || cm.Generation > 1 {
		t.Logf("state resourceVersion %s", cm.ResourceVersion)
	}
	nps, err := admin.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=pdsafelist"})
	if err != nil || len(nps.Items) != 1 || !strings.Contains(string(must(json.Marshal(nps.Items[0].Spec))), "54.1.1.1/32") {
		t.Fatalf("policies: %v %+v", err, nps)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + healthAddr + path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %s", path, resp.Status, body)
		}
	}
	// SIGTERM releases the Lease: an update, through the named rule.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGTERM")
	}
	lease, err = admin.CoordinationV1().Leases(leaseNS).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || (lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "") {
		t.Errorf("after SIGTERM the lease is %v %+v, want released", err, lease.Spec)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// createObject creates a manifest's object for real, as admin.
func createObject(t *testing.T, c *kubetest.Cluster, m manifest) {
	t.Helper()
	cfg := c.AdminConfig()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	gvk := m.obj.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", m, err)
	}
	if _, err := dynamic.NewForConfigOrDie(cfg).Resource(mapping.Resource).Namespace(m.obj.GetNamespace()).
		Create(context.Background(), m.obj.DeepCopy(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: %v", m, err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig holding a token the API
// server issues for the ServiceAccount, as a pod's projected token is.
func serviceAccountKubeconfig(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface, ns, name string) string {
	t.Helper()
	exp := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthority: c.CAFile}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa", Namespace: ns}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// testConfig is the Deployment's config with its sinks as shipped and its
// sets replaced by one static set of the same direction: the test has no
// route to PagerDuty.
func testConfig(t *testing.T, shipped string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(shipped), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["sinks"] == nil {
		t.Fatal("the Deployment's config has no sinks")
	}
	delete(doc, "region")
	doc["sets"] = []string{"alerts"}
	doc["catalog"] = map[string]any{"alerts": map[string]any{"direction": "egress", "ports": []int{443}, "static": []string{"54.1.1.1"}}}
	return must(yaml.Marshal(doc))
}

// overrideArgs replaces the values of the flags named in set, written as
// --flag=value or --flag value, and appends those not found.
func overrideArgs(args []string, set map[string]string) []string {
	out := slices.Clone(args)
	done := map[string]bool{}
	for i := 0; i < len(out); i++ {
		name, _, eq := strings.Cut(out[i], "=")
		v, ok := set[name]
		if !ok {
			continue
		}
		done[name] = true
		if eq {
			out[i] = name + "=" + v
		} else if i+1 < len(out) {
			out[i+1] = v
			i++
		}
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range set {
			if !yield(k) {
				return
			}
		}
	}) {
		if !done[name] {
			out = append(out, name+"="+set[name])
		}
	}
	return out
}

// flagValue reads a NAMESPACE/NAME flag from args.
func flagValue(t *testing.T, args []string, name string) (string, string) {
	t.Helper()
	for i, a := range args {
		v, ok := strings.CutPrefix(a, name+"=")
		if !ok && a == name && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			ns, n, _ := strings.Cut(v, "/")
			return ns, n
		}
	}
	t.Fatalf("the Deployment does not pass %s", name)
	return "", ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
