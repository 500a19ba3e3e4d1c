package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cluster flags refuse what cannot work, in one line, before anything
// runs.
func TestClusterFlagsRefused(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sync", "--leader-elect", "pdsafelist/pdsafelist"}, "--leader-elect needs --interval"},
		{[]string{"sync", "--interval", "1m", "--leader-elect", "pdsafelist"}, "want NAMESPACE/NAME"},
		{[]string{"sync", "--interval", "1m", "--leader-elect", "Pd/x"}, "namespace"},
		{[]string{"sync", "--interval", "1m", "--leader-elect", "a/b", "--leader-elect-renew-deadline", "20s"}, "must be less than the lease duration"},
		{[]string{"sync", "--state-configmap", "nons"}, "--state-configmap"},
		{[]string{"sync", "--health-addr", "127.0.0.1:0"}, "needs --interval"},
	} {
		r := e.run(tt.args...)
		if r.code != 1 || !strings.Contains(r.errOut, tt.want) || strings.Count(strings.TrimSpace(r.errOut), "\n") > 0 {
			t.Errorf("%v: code %d, stderr %q; want 1 and one line with %q", tt.args, r.code, r.errOut, tt.want)
		}
	}
}

// A state ConfigMap that cannot be read stops the run before any sink is
// written: an unknown state is not an empty one to overwrite.
func TestStateConfigMapUnreachable(t *testing.T) {
	e := newEnv(t)
	e.config("193.0.2.10")
	kc := filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("sync", "--state-configmap", "default/pdsafelist-state", "--kubeconfig", kc)
	if r.code != 1 || !strings.Contains(r.errOut, "state configmap default/pdsafelist-state: read") || strings.Count(strings.TrimSpace(r.errOut), "\n") > 0 {
		t.Errorf("code %d, stderr %q", r.code, r.errOut)
	}
	if _, err := os.Stat(e.nft); err == nil {
		t.Error("the sink was written though the state could not be read")
	}
}
