package kubetest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// CiliumModule is the Cilium release whose CRD manifests the tests install.
const CiliumModule = "github.com/cilium/cilium@v1.18.0"

// CiliumCRD is a manifest the Cilium module ships, e.g.
// "ciliumcidrgroups.yaml" under pkg/k8s/apis/cilium.io/client/crds/v2,
// read from the module cache (go mod download fetches it on first use).
// Without the go command or the module it skips t, or fails it when
// integration tests are required.
func CiliumCRD(t testing.TB, file string) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testutil.Unavailable(t, "needs the go command to fetch "+CiliumModule)
	}
	cmd := exec.Command(goBin, "mod", "download", "-json", CiliumModule)
	// Outside any module, so the project's go.mod is neither read nor
	// changed.
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		testutil.Unavailable(t, "go mod download "+CiliumModule+": "+mod.Error+" "+errText(err))
	}
	data, err := os.ReadFile(filepath.Join(mod.Dir, "pkg/k8s/apis/cilium.io/client/crds/v2", file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return err.Error()
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRD creates the CustomResourceDefinition in manifest (YAML) as
// Admin and waits until the server serves it.
func (c *Cluster) InstallCRD(t testing.TB, manifest []byte) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal(manifest, &obj); err != nil {
		t.Fatalf("CRD manifest: %v", err)
	}
	dyn, err := dynamic.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	crd := &unstructured.Unstructured{Object: obj}
	if _, err := dyn.Resource(crdResource).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD %s: %v", crd.GetName(), err)
	}
	deadline := time.Now().Add(ReadyTimeout)
	for {
		got, err := dyn.Resource(crdResource).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s not established within %v", crd.GetName(), ReadyTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
