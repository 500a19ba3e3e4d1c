package synccmd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

// Timings of the two-process test: short, in the defaults' proportions.
const (
	leaseDuration = 6 * time.Second
	retryPeriod   = time.Second
)

// replica is one pdsafelist process and the runs it logged.
type replica struct {
	name string
	cmd  *exec.Cmd
	runs atomic.Int32
	mu   sync.Mutex
	log  []string
	done chan error
}

func (r *replica) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, "\n")
}

// TestLeaderElectReplicas is issue 23's two processes of
// sync --interval 2s --leader-elect against a real API server: one holds
// the Lease and syncs, the other never takes it from a live holder;
// SIGKILL the holder and the other takes over within the lease duration
// and keeps the NetworkPolicy in sync; SIGTERM releases at once.
func TestLeaderElectReplicas(t *testing.T) {
	c := kubetest.Start(t)
	bin := testutil.BuildCommand(t)
	admin, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := c.Kubeconfig(t, kubetest.Admin)
	dir := t.TempDir()
	list := filepath.Join(dir, "hooks.txt")
	writeList := func(lines ...string) {
		t.Helper()
		if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeList("193.0.2.10")
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(cfg, []byte(`sets: [hooks]
grace: 0s
catalog:
  hooks:
    direction: egress
    ports: [443]
    sources: [{type: file, path: `+list+`, format: text}]
sinks:
  - {type: k8s-networkpolicy, policy: default/pagerduty, pod_selector: app=alerts}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(name string) *replica {
		r := &replica{name: name, done: make(chan error, 1)}
		r.cmd = exec.Command(bin, "sync", "--config", cfg, "--state-dir", filepath.Join(dir, name),
			"--interval", "2s", "--leader-elect", "default/pdsafelist",
			"--leader-elect-lease-duration", leaseDuration.String(), "--leader-elect-renew-deadline", "4s",
			"--leader-elect-retry-period", retryPeriod.String(),
			"--state-configmap", "default/pdsafelist-state", "--log-format", "json")
		r.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAME="+name)
		stderr, err := r.cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		scanned := make(chan struct{})
		go func() {
			defer close(scanned)
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				r.mu.Lock()
				r.log = append(r.log, sc.Text())
				r.mu.Unlock()
				var m map[string]any
				if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "sync finished" {
					r.runs.Add(1)
				}
			}
		}()
		go func() {
			<-scanned
			r.done <- r.cmd.Wait()
		}()
		t.Cleanup(func() {
			_ = r.cmd.Process.Kill()
			<-r.done
			if t.Failed() {
				t.Logf("--- %s:\n%s", name, r.output())
			}
		})
		return r
	}
	ctx := context.Background()
	holder := func() string {
		l, err := admin.CoordinationV1().Leases("default").Get(ctx, "pdsafelist", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	cidrs := func() []string {
		np, err := admin.NetworkingV1().NetworkPolicies("default").Get(ctx, "pagerduty", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rule := range np.Spec.Egress {
			for _, peer := range rule.To {
				if peer.IPBlock != nil {
					out = append(out, peer.IPBlock.CIDR)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	waitFor := func(within time.Duration, what string, cond func() bool) time.Duration {
		t.Helper()
		began := time.Now()
		for !cond() {
			if time.Since(began) > within {
				t.Fatalf("%s: not within %v (lease holder %q, policy %v)", what, within, holder(), cidrs())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(began)
	}

	a := start("replica-a")
	waitFor(30*time.Second, "replica-a syncs", func() bool { return a.runs.Load() > 0 })
	b := start("replica-b")
	if h := holder(); h != "replica-a" {
		t.Fatalf("lease holder %q, want replica-a", h)
	}
	if got := cidrs(); !slices.Equal(got, []string{"193.0.2.10/32"}) {
		t.Fatalf("policy holds %v", got)
	}
	// Two lease durations: the holder keeps syncing, the other never
	// runs nor takes the Lease.
	before := a.runs.Load()
	for end := time.Now().Add(2 * leaseDuration); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if h := holder(); h != "replica-a" {
			t.Fatalf("the Lease moved to %q from a live holder", h)
		}
		if n := b.runs.Load(); n != 0 {
			t.Fatalf("replica-b ran %d times while replica-a held the Lease", n)
		}
	}
	if a.runs.Load()-before < 3 {
		t.Errorf("replica-a ran %d times in %v at --interval 2s", a.runs.Load()-before, 2*leaseDuration)
	}
	writeList("193.0.2.10", "54.1.1.7")
	waitFor(10*time.Second, "the holder applies a change", func() bool {
		return slices.Equal(cidrs(), []string{"193.0.2.10/32", "54.1.1.7/32"})
	})
	// The state is saved after the apply the policy shows, so wait for it.
	waitFor(10*time.Second, "the holder saves the state in the ConfigMap", func() bool {
		cm, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "pdsafelist-state", metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["state.json"], "54.1.1.7")
	})

	// SIGKILL: no release; replica-b takes over once the Lease expires.
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The standby times the expiry from the poll that last saw a renewal,
	// and polls every retry period plus up to 120% jitter (client-go's
	// JitterFactor): the lease duration plus two polls at worst, and a
	// second for a loaded machine. (leaseDuration + 2*retryPeriod + 1s
	// failed in CI at 9s.)
	maxPoll := retryPeriod * 22 / 10
	took := waitFor(leaseDuration+2*maxPoll+time.Second, "replica-b takes over a dead holder's Lease", func() bool { return holder() == "replica-b" })
	t.Logf("replica-b took the Lease %v after replica-a was killed (lease duration %v)", took.Round(time.Millisecond), leaseDuration)
	waitFor(10*time.Second, "replica-b syncs", func() bool { return b.runs.Load() > 0 })
	writeList("54.1.1.7", "54.1.1.9")
	waitFor(10*time.Second, "replica-b keeps the policy in sync", func() bool {
		return slices.Equal(cidrs(), []string{"54.1.1.7/32", "54.1.1.9/32"})
	})

	// A replacement replica waits; SIGTERM of the holder hands over at
	// once, well within the lease duration.
	c2 := start("replica-c")
	time.Sleep(3 * retryPeriod)
	if h, n := holder(), c2.runs.Load(); h != "replica-b" || n != 0 {
		t.Fatalf("after replica-c started: holder %q, replica-c ran %d times", h, n)
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took = waitFor(leaseDuration, "replica-c takes a released Lease", func() bool { return holder() == "replica-c" })
	t.Logf("replica-c took the Lease %v after SIGTERM to replica-b", took.Round(time.Millisecond))
	if took > 2*retryPeriod+time.Second {
		t.Errorf("hand-over took %v: the Lease was not released at SIGTERM", took)
	}
	select {
	case err := <-b.done:
		b.done <- err
		if err != nil {
			t.Errorf("replica-b exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("replica-b still running 10s after SIGTERM")
	}
	writeList("54.1.1.9")
	waitFor(10*time.Second, "replica-c keeps the policy in sync", func() bool {
		return slices.Equal(cidrs(), []string{"54.1.1.9/32"})
	})
	if err := c2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(5*time.Second, "the last replica releases the Lease", func() bool { return holder() == "" })
}
