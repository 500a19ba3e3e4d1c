package synccmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"

	"github.com/pdsafelist/pdsafelist/pkg/leader"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
	"github.com/pdsafelist/pdsafelist/pkg/state"
	"github.com/pdsafelist/pdsafelist/pkg/state/kubestate"
)

// Cluster is what sync needs to run on the cluster it protects: the Lease
// replicas compete for, the ConfigMap the state lives in, the cluster they
// are found in, and the health endpoint for the kubelet's probes.
type Cluster struct {
	LeaderElect                               string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	StateConfigMap                            string
	Kubeconfig, Context                       string
	HealthAddr                                string

	client func() (kubernetes.Interface, error)
}

// check validates the cluster flags against the rest of the command.
func (c *Cluster) check(opts *Options) error {
	if c.LeaderElect != "" {
		if opts.Interval <= 0 {
			return fmt.Errorf("--leader-elect needs --interval: replicas take turns running a loop; for one run at a time use a CronJob with concurrencyPolicy: Forbid")
		}
		if _, _, err := leader.ParseName("--leader-elect", c.LeaderElect); err != nil {
			return err
		}
		if err := c.leaderConfig().Check(); err != nil {
			return err
		}
	}
	if c.StateConfigMap != "" {
		if _, _, err := leader.ParseName("--state-configmap", c.StateConfigMap); err != nil {
			return err
		}
	}
	if c.HealthAddr != "" && opts.Interval <= 0 {
		return fmt.Errorf("--health-addr serves probes of a long-running sync; it needs --interval")
	}
	return nil
}

func (c *Cluster) leaderConfig() leader.Config {
	ns, name, _ := leader.ParseName("--leader-elect", c.LeaderElect)
	return leader.Config{Namespace: ns, Name: name,
		Identity:      leader.Identity(os.Getenv, os.Hostname, os.Getpid()),
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
}

// kube finds the cluster once, as kubectl does (the Kubernetes sinks'
// loading rules).
func (c *Cluster) kube() (kubernetes.Interface, error) {
	if c.client == nil {
		c.client = sync.OnceValues(func() (kubernetes.Interface, error) {
			return kubeobj.Clientset(c.Kubeconfig, c.Context)
		})
	}
	return c.client()
}

// store is the state's ConfigMap for one run, or nil for the state file.
func (c *Cluster) store() state.Store {
	if c.StateConfigMap == "" {
		return nil
	}
	ns, name, _ := leader.ParseName("--state-configmap", c.StateConfigMap)
	cs, err := c.kube()
	if err != nil {
		return brokenStore{fmt.Errorf("state configmap %s: %w", c.StateConfigMap, err)}
	}
	return kubestate.New(cs.CoreV1().ConfigMaps(ns), ns, name)
}

// brokenStore is a store whose cluster could not be found: every run
// fails with why, and nothing is applied.
type brokenStore struct{ err error }

func (b brokenStore) Load(context.Context) (*state.File, error) { return nil, b.err }
func (b brokenStore) Save(context.Context, *state.File) error   { return b.err }

// elect runs work while this replica holds the Lease, until ctx ends.
func (c *Cluster) elect(ctx context.Context, opts *Options, health *leaderelection.HealthzAdaptor, work func(ctx context.Context)) error {
	cs, err := c.kube()
	if err != nil {
		return fmt.Errorf("--leader-elect %s: %w", c.LeaderElect, err)
	}
	log := opts.Factory.Logger()
	// client-go's elector logs through klog; its lines join ours.
	klog.SetSlogLogger(log)
	cfg := c.leaderConfig()
	cfg.Client, cfg.Log, cfg.Health = cs.CoordinationV1(), log, health
	log.Info("competing for the lease", "lease", c.LeaderElect, "identity", cfg.Identity)
	return leader.Run(ctx, cfg, work)
}

// serveHealth answers the kubelet's probes until ctx ends: /readyz once
// the loop has started, /healthz unless this replica holds a Lease it
// failed to renew for longer than its lease duration (the elector's own
// check, as kube-controller-manager serves it).
func (c *Cluster) serveHealth(ctx context.Context, opts *Options, health *leaderelection.HealthzAdaptor) error {
	l, err := net.Listen("tcp", c.HealthAddr)
	if err != nil {
		return fmt.Errorf("--health-addr %s: %w", c.HealthAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", leader.HealthzHandler(health))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Factory.Logger().Error("health endpoint stopped", "addr", c.HealthAddr, "err", err.Error())
		}
	}()
	opts.Factory.Logger().Info("serving /healthz and /readyz", "addr", l.Addr().String())
	return nil
}
