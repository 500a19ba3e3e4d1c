package leader

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

const ns = "default"

// Fast timings keep the cluster tests short; the ratios are the defaults'.
func fast(client coordinationv1.LeasesGetter, name, id string) Config {
	return Config{Namespace: ns, Name: name, Identity: id, Client: client,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond}
}

func TestCheck(t *testing.T) {
	ok := Config{Identity: "a", LeaseDuration: DefaultLeaseDuration, RenewDeadline: DefaultRenewDeadline, RetryPeriod: DefaultRetryPeriod}
	if err := ok.Check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []Config{
		{Identity: "a", LeaseDuration: 10 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second},
		{Identity: "a", LeaseDuration: 12 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
		{Identity: "a", LeaseDuration: 15 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second},
		{Identity: "a", LeaseDuration: 0, RenewDeadline: 1, RetryPeriod: 1},
		{LeaseDuration: DefaultLeaseDuration, RenewDeadline: DefaultRenewDeadline, RetryPeriod: DefaultRetryPeriod},
	} {
		if err := c.Check(); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line", c, err)
		}
	}
}

func TestParseName(t *testing.T) {
	if ns, n, err := ParseName("--leader-elect", "pdsafelist/pdsafelist-leader"); err != nil || ns != "pdsafelist" || n != "pdsafelist-leader" {
		t.Errorf("got %q %q %v", ns, n, err)
	}
	for _, bad := range []string{"", "name", "/name", "ns/", "a/b/c", "NS/name", "ns/Name", "ns/na me", "n\ns/x"} {
		if _, _, err := ParseName("--leader-elect", bad); err == nil || strings.Contains(err.Error(), "\n") && !strings.Contains(bad, "\n") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestIdentity(t *testing.T) {
	env := map[string]string{}
	host := func() (string, error) { return "node-1", nil }
	if got := Identity(func(k string) string { return env[k] }, host, 42); got != "node-1_42" {
		t.Errorf("got %q", got)
	}
	env["POD_NAME"] = "pdsafelist-7d9-abc"
	if got := Identity(func(k string) string { return env[k] }, host, 42); got != "pdsafelist-7d9-abc" {
		t.Errorf("got %q", got)
	}
}

// TestLease runs the election cases against one real API server.
func TestLease(t *testing.T) {
	c := kubetest.Start(t)
	admin, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OneHolder", func(t *testing.T) { oneHolder(t, admin) })
	t.Run("LostLeaseStopsWork", func(t *testing.T) { lostLease(t, admin) })
	t.Run("ReleaseAfterWork", func(t *testing.T) { releaseAfterWork(t, admin) })
	t.Run("StopReleases", func(t *testing.T) { stopReleases(t, admin) })
}

// candidate runs Run in the background and records its work.
type candidate struct {
	working atomic.Bool
	terms   atomic.Int32
	cancel  context.CancelFunc
	done    chan error
}

func start(cfg Config, work func(ctx context.Context)) *candidate {
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- Run(ctx, cfg, func(lctx context.Context) {
			c.terms.Add(1)
			c.working.Store(true)
			defer c.working.Store(false)
			if work != nil {
				work(lctx)
				return
			}
			select {
			case <-lctx.Done():
			case <-ctx.Done():
			}
		})
	}()
	return c
}

func (c *candidate) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after its context ended")
	}
}

func lease(t *testing.T, admin kubernetes.Interface, name string) *coordv1.Lease {
	t.Helper()
	l, err := admin.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func holder(l *coordv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(began)
}

// Two candidates: one works, the other waits through several lease
// durations without taking the Lease or working; when the holder stops,
// the other takes over.
func oneHolder(t *testing.T, admin kubernetes.Interface) {
	cl := admin.CoordinationV1()
	a := start(fast(cl, "one", "a"), nil)
	waitFor(t, 10*time.Second, "a holds", a.working.Load)
	b := start(fast(cl, "one", "b"), nil)
	transitions := lease(t, admin, "one").Spec.LeaseTransitions
	for range 40 { // 4s > a lease duration
		time.Sleep(100 * time.Millisecond)
		if b.working.Load() || holder(lease(t, admin, "one")) != "a" {
			t.Fatal("b took the Lease from a live holder")
		}
	}
	if got := lease(t, admin, "one").Spec.LeaseTransitions; *got != *transitions {
		t.Errorf("lease transitions %d -> %d", *transitions, *got)
	}
	a.stop(t)
	took := waitFor(t, 5*time.Second, "b takes over", func() bool { return b.working.Load() && holder(lease(t, admin, "one")) == "b" })
	t.Logf("b took over %v after a released", took.Round(time.Millisecond))
	b.stop(t)
}

// Someone else takes the Lease (as a replica would after a partition):
// the holder's work ends within the renew deadline and a retry, and the
// holder does not release the Lease it no longer holds.
func lostLease(t *testing.T, admin kubernetes.Interface) {
	cl := admin.CoordinationV1()
	cfg := fast(cl, "lost", "a")
	a := start(cfg, nil)
	waitFor(t, 10*time.Second, "a holds", a.working.Load)
	l := lease(t, admin, "lost")
	thief, dur := "thief", int32(60)
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = &thief, &dur
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if _, err := cl.Leases(ns).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stopped := waitFor(t, cfg.RenewDeadline+2*cfg.RetryPeriod+time.Second, "a stops working", func() bool { return !a.working.Load() })
	t.Logf("work stopped %v after the Lease was taken", stopped.Round(time.Millisecond))
	time.Sleep(cfg.RetryPeriod * 2)
	if a.working.Load() || holder(lease(t, admin, "lost")) != "thief" {
		t.Errorf("after losing: working %v, holder %q", a.working.Load(), holder(lease(t, admin, "lost")))
	}
	a.stop(t)
}

// failingRenew refuses renewals (updates naming a holder) while fail is
// set, and records when a release (an update naming none) was sent.
type failingRenew struct {
	coordinationv1.LeasesGetter
	fail      atomic.Bool
	mu        sync.Mutex
	releaseAt time.Time
}

func (f *failingRenew) Leases(namespace string) coordinationv1.LeaseInterface {
	return &failingLeases{LeaseInterface: f.LeasesGetter.Leases(namespace), f: f}
}

type failingLeases struct {
	coordinationv1.LeaseInterface
	f *failingRenew
}

func (l *failingLeases) Update(ctx context.Context, lease *coordv1.Lease, opts metav1.UpdateOptions) (*coordv1.Lease, error) {
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		l.f.mu.Lock()
		l.f.releaseAt = time.Now()
		l.f.mu.Unlock()
	} else if l.f.fail.Load() {
		return nil, errors.New("injected: renew failed")
	}
	return l.LeaseInterface.Update(ctx, lease, opts)
}

// When renewing fails, client-go releases the Lease before it cancels
// the context it gave the work; another replica could take it while the
// work still writes. The release is sent only after the work returned.
func releaseAfterWork(t *testing.T, admin kubernetes.Interface) {
	client := &failingRenew{LeasesGetter: admin.CoordinationV1()}
	cfg := fast(client, "release", "a")
	var workEnd atomic.Int64
	a := start(cfg, func(ctx context.Context) {
		<-ctx.Done()
		// An apply in flight takes a moment to stop.
		time.Sleep(300 * time.Millisecond)
		workEnd.Store(time.Now().UnixNano())
	})
	waitFor(t, 10*time.Second, "a holds", a.working.Load)
	client.fail.Store(true)
	waitFor(t, cfg.RenewDeadline+2*cfg.RetryPeriod+2*time.Second, "a gives up", func() bool { return workEnd.Load() != 0 })
	waitFor(t, 5*time.Second, "a releases", func() bool {
		client.mu.Lock()
		defer client.mu.Unlock()
		return !client.releaseAt.IsZero()
	})
	client.mu.Lock()
	releaseAt := client.releaseAt
	client.mu.Unlock()
	if end := time.Unix(0, workEnd.Load()); releaseAt.Before(end) {
		t.Errorf("the Lease was released %v before the work returned", end.Sub(releaseAt))
	}
	client.fail.Store(false)
	a.stop(t)
}

// Ending Run's context (SIGTERM) lets the work finish, then releases the
// Lease at once: no holder, and a waiting replica need not wait out the
// lease duration.
func stopReleases(t *testing.T, admin kubernetes.Interface) {
	cl := admin.CoordinationV1()
	cfg := fast(cl, "stop", "a")
	cfg.LeaseDuration, cfg.RenewDeadline = 30*time.Second, 20*time.Second
	a := start(cfg, nil)
	waitFor(t, 10*time.Second, "a holds", a.working.Load)
	b := start(fast(cl, "stop", "b"), nil)
	time.Sleep(time.Second)
	a.stop(t)
	took := waitFor(t, 5*time.Second, "b takes over", b.working.Load)
	t.Logf("b took over %v after a stopped (lease duration %v)", took.Round(time.Millisecond), cfg.LeaseDuration)
	b.stop(t)
	if h := holder(lease(t, admin, "stop")); h != "" {
		t.Errorf("after b stopped the holder is %q, want none", h)
	}
}
