// Package leader lets replicas of one long-running sync take turns: they
// compete for a coordination.k8s.io/v1 Lease (client-go leaderelection),
// and only the holder does the work. The holder renews the Lease every
// retry period; when it stops (SIGKILL, a lost node), another replica takes
// the Lease once it has gone unrenewed for the lease duration. On a clean
// stop the holder releases the Lease at once.
//
// Never two writers: the work runs under a context that ends as soon as
// this replica cannot renew, and the Lease is released only after the work
// has returned. A holder that fails to renew gives up at most retry period
// plus renew deadline after its last renewal, which the lease duration must
// exceed, so its work has stopped before another replica may take over.
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults, as kube-controller-manager's: a dead holder is replaced within
// about 15s, and a holder that cannot reach the API server for 10s stops.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config says which Lease to compete for, as whom, and how fast.
type Config struct {
	// Namespace and Name are the Lease's.
	Namespace, Name string
	// Identity is this replica's name in the Lease's holderIdentity.
	Identity string
	// LeaseDuration is how long the Lease must go unrenewed before another
	// replica takes it; RenewDeadline is how long the holder keeps trying to
	// renew before it stops; RetryPeriod is the time between tries.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Client reaches the Leases.
	Client coordinationv1.LeasesGetter
	Log    *slog.Logger
	// Health, when set, learns the elector so that /healthz fails once
	// this replica holds a Lease it has not renewed in time.
	Health *leaderelection.HealthzAdaptor
}

// ParseName reads NAMESPACE/NAME, both valid Kubernetes names.
func ParseName(flag, s string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(s, "/")
	if !ok || ns == "" || n == "" || strings.Contains(n, "/") {
		return "", "", fmt.Errorf("%s %q: want NAMESPACE/NAME", flag, s)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", "", fmt.Errorf("%s %q: namespace: %s", flag, s, errs[0])
	}
	if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
		return "", "", fmt.Errorf("%s %q: name: %s", flag, s, errs[0])
	}
	return ns, n, nil
}

// Identity is POD_NAME when set (the Downward API), else hostname_pid: two
// processes on one host are two candidates.
func Identity(getenv func(string) string, hostname func() (string, error), pid int) string {
	if p := getenv("POD_NAME"); p != "" {
		return p
	}
	h, err := hostname()
	if err != nil || h == "" {
		h = "unknown"
	}
	return h + "_" + strconv.Itoa(pid)
}

// Check refuses timings under which a holder could still be writing when
// another takes over, or that the elector would refuse.
func (c Config) Check() error {
	switch {
	case c.LeaseDuration <= 0 || c.RenewDeadline <= 0 || c.RetryPeriod <= 0:
		return fmt.Errorf("leader election: lease duration, renew deadline and retry period must be positive")
	case c.RenewDeadline+c.RetryPeriod >= c.LeaseDuration:
		return fmt.Errorf("leader election: renew deadline (%s) plus retry period (%s) must be less than the lease duration (%s), or a holder that lost the Lease could still be writing when another takes it", c.RenewDeadline, c.RetryPeriod, c.LeaseDuration)
	case float64(c.RenewDeadline) <= leaderelection.JitterFactor*float64(c.RetryPeriod):
		return fmt.Errorf("leader election: renew deadline (%s) must exceed %.1f times the retry period (%s)", c.RenewDeadline, leaderelection.JitterFactor, c.RetryPeriod)
	case c.Identity == "":
		return fmt.Errorf("leader election: empty identity")
	}
	return nil
}

// Run competes for the Lease until ctx ends. Each time this replica wins
// it, work runs with a context that ends when the Lease is lost; work
// must return promptly then. When ctx ends, work (if running) is left to
// finish on its own terms (it sees ctx too), and then the Lease is
// released. Run returns after work has returned and the Lease was given
// up.
func Run(ctx context.Context, c Config, work func(ctx context.Context)) error {
	if err := c.Check(); err != nil {
		return err
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		if err := term(ctx, c, log, work); err != nil {
			return err
		}
		if ctx.Err() == nil {
			log.Warn("lost the lease; stopped syncing and competing again", "lease", c.Namespace+"/"+c.Name, "identity", c.Identity)
		}
	}
	return nil
}

// term is one campaign: wait for the Lease, work while holding it, and
// return once it is lost or released.
func term(ctx context.Context, c Config, log *slog.Logger, work func(ctx context.Context)) error {
	// The elector's own context ends only once work is done (or never
	// began): cancelling it is what releases the Lease.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	g := &guard{}
	lock := &guardedLock{
		Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name},
			Client:     c.Client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: c.Identity},
		},
		guard: g,
	}
	desc := c.Namespace + "/" + c.Name
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.LeaseDuration,
		RenewDeadline:   c.RenewDeadline,
		RetryPeriod:     c.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            desc,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				if !g.start(ctx, leadCtx) {
					return
				}
				defer g.done()
				log.Info("holding the lease; syncing", "lease", desc, "identity", c.Identity)
				work(g.ctx)
				// Work ended on its own (ctx ended): give the Lease up.
				stopElecting()
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if id != c.Identity && id != "" {
					log.Info("another replica holds the lease; waiting", "lease", desc, "holder", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election %s: %w", desc, err)
	}
	if c.Health != nil {
		c.Health.SetLeaderElection(le)
	}
	// A signal while waiting for the Lease stops the campaign; one while
	// holding it lets work finish first (work returns and stops it).
	go func() {
		select {
		case <-ctx.Done():
		case <-electCtx.Done():
			return
		}
		if !g.began() {
			stopElecting()
		}
	}()
	le.Run(electCtx)
	g.stopAndWait(context.Background())
	return nil
}

// guard is the work of one term: its context and whether it ended.
type guard struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	refused bool
	end     chan struct{}
}

// start begins the work unless ctx has already ended; the work's context
// ends with leadCtx (the elector's) or when the Lease is about to be
// released.
func (g *guard) start(ctx, leadCtx context.Context) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ctx.Err() != nil || g.refused {
		return false
	}
	g.ctx, g.cancel = context.WithCancel(leadCtx)
	g.started = true
	g.end = make(chan struct{})
	return true
}

func (g *guard) began() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started {
		// Too late to start now: the campaign is stopping.
		g.refused = true
	}
	return g.started
}

func (g *guard) done() { close(g.end) }

// stopAndWait cancels the work and waits for it to return, or for ctx.
func (g *guard) stopAndWait(ctx context.Context) error {
	g.mu.Lock()
	if !g.started {
		g.refused = true
		g.mu.Unlock()
		return nil
	}
	cancel, end := g.cancel, g.end
	g.mu.Unlock()
	cancel()
	select {
	case <-end:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// guardedLock stops the work before the Lease is released: the elector
// releases (an update with no holder) as soon as renewing fails, before it
// cancels the context it gave the work, and a replica that took the
// released Lease at once would write beside us.
type guardedLock struct {
	resourcelock.Interface
	guard *guard
}

func (l *guardedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if r.HolderIdentity == "" {
		if err := l.guard.stopAndWait(ctx); err != nil {
			// Not released: the Lease expires on its own instead.
			return fmt.Errorf("release %s: work still running: %w", l.Describe(), err)
		}
	}
	return l.Interface.Update(ctx, r)
}

// HealthzHandler serves /healthz from the elector's check: an error once
// this replica holds a Lease it has failed to renew for longer than the
// adaptor's timeout; a replica waiting for the Lease is healthy.
func HealthzHandler(a *leaderelection.HealthzAdaptor) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.Check(r); err != nil {
			http.Error(w, oneLine(err), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
