// Package kubetest runs a real kube-apiserver over a real etcd on loopback,
// the pair the Kubernetes sinks are tested against: the server's own
// validation, RBAC and server-side apply, not a fake clientset. The
// binaries come from scripts/k8s/build-control-plane.sh.
//
// A cluster costs a few seconds and about 300 MB, so a test package starts
// one: call Start in one top-level test and run the cases as its subtests.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// User names one of the two identities in the cluster's token file.
type User string

const (
	// Admin is in system:masters: RBAC allows it everything.
	Admin User = "admin"
	// Unprivileged is in no group beyond system:authenticated, so RBAC
	// allows it nothing on namespaced objects until a test grants it.
	Unprivileged User = "pdsafelist-user"
)

// ReadyTimeout bounds how long Start waits for etcd and for /readyz.
const ReadyTimeout = 60 * time.Second

const buildHint = "scripts/k8s/build-control-plane.sh"

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Host is the apiserver's URL, https://127.0.0.1:PORT.
	Host string
	// CAFile holds the apiserver's self-signed certificate chain, which
	// clients verify the server against (127.0.0.1 is in its names).
	CAFile string
	// Pgids are the process groups of etcd and kube-apiserver, so a test
	// can check that none outlives the cluster.
	Pgids  []int
	dir    string
	tokens map[User]string
}

// Start runs etcd and kube-apiserver on free loopback ports under
// t.TempDir and returns once /readyz answers and the default namespace
// exists; both are killed, and
// waited for, at t's cleanup. Without the binaries it skips t, or fails
// it when integration tests are required.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() && !testutil.Required() {
		t.Skip("kube-apiserver test skipped in -short mode")
	}
	etcdBin, apiBin := binary("etcd"), binary("kube-apiserver")
	if etcdBin == "" || apiBin == "" {
		testutil.Unavailable(t, "needs etcd and kube-apiserver in GOPATH/bin or on PATH; build them with "+buildHint)
	}
	dir := t.TempDir() // registered first, so removed after the processes end
	c := &Cluster{dir: dir, tokens: map[User]string{Admin: token(t), Unprivileged: token(t)}}
	if err := c.writeFiles(); err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	c.CAFile = filepath.Join(dir, "certs", "apiserver.crt")

	etcd, err := launch(t, c, filepath.Join(dir, "etcd.log"), etcdBin,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--log-level=warn")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(ReadyTimeout)
	if err := waitFor(deadline, etcd, func() bool {
		return get(http.DefaultClient, etcdClient+"/health") == nil
	}); err != nil {
		t.Fatalf("etcd: %v\n%s", err, tail(etcd.log))
	}

	api, err := launch(t, c, filepath.Join(dir, "kube-apiserver.log"), apiBin,
		"--etcd-servers="+etcdClient,
		// Advertising 127.0.0.1 keeps the server off the host's other
		// addresses; the endpoint reconciler refuses a loopback address,
		// and with no pods nothing reads the kubernetes Endpoints anyway.
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	var probe *http.Client
	if err := waitFor(deadline, api, func() bool {
		if probe == nil {
			// The certificate is written before the server listens; until
			// it exists there is nothing to verify against.
			if _, err := os.Stat(c.CAFile); err != nil {
				return false
			}
			if probe, err = rest.HTTPClientFor(c.AdminConfig()); err != nil {
				t.Fatal(err)
			}
		}
		// The default namespace comes from a controller that /readyz does
		// not wait for; tests use it at once.
		return get(probe, c.Host+"/readyz") == nil &&
			get(probe, c.Host+"/api/v1/namespaces/default") == nil
	}); err != nil {
		t.Fatalf("kube-apiserver: %v\n%s", err, tail(api.log))
	}
	return c
}

// AdminConfig is a client config for Admin.
func (c *Cluster) AdminConfig() *rest.Config { return c.Config(Admin) }

// UserConfig is a client config for Unprivileged.
func (c *Cluster) UserConfig() *rest.Config { return c.Config(Unprivileged) }

// Config is a client config for user that verifies the server's
// certificate against CAFile.
func (c *Cluster) Config(user User) *rest.Config {
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     c.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		UserAgent:       "pdsafelist-kubetest",
	}
}

// Kubeconfig writes a kubeconfig file for user, with its one context
// current, and returns its path.
func (c *Cluster) Kubeconfig(t testing.TB, user User) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthority: c.CAFile}
	cfg.AuthInfos[string(user)] = &clientcmdapi.AuthInfo{Token: c.tokens[user]}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: string(user), Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// binary finds name in GOPATH/bin, where the build script puts it, and
// then on PATH; "" when it is in neither.
func binary(name string) string {
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gopath, "bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	p, _ := exec.LookPath(name)
	return p
}

// writeFiles writes the service-account key pair and the token file.
func (c *Cluster) writeFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(c.dir, "sa.key"), priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "sa.pub"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}
	// token,user,uid[,"group,..."]
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s\n",
		c.tokens[Admin], Admin, "uid-admin", c.tokens[Unprivileged], Unprivileged, "uid-user")
	return os.WriteFile(filepath.Join(c.dir, "tokens.csv"), []byte(tokens), 0o600)
}

func token(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePorts asks the kernel for n free loopback ports. They are released
// before the servers bind them, so another process could take one first;
// on this machine that has not been seen, and a clash fails loudly.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type process struct {
	log    string
	exited chan struct{}
	err    error // set before exited is closed
}

// launch starts bin in its own process group with its output in logPath,
// and kills the group and waits for it at t's cleanup.
func launch(t testing.TB, c *Cluster, logPath, bin string, args ...string) (*process, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig ends the servers if the test binary dies without running
	// cleanups (a -timeout panic); nothing here locks an OS thread, the
	// case in which it would fire early.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c.Pgids = append(c.Pgids, cmd.Process.Pid)
	p := &process{log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	})
	return p, nil
}

// waitFor polls ready until it holds, p exits, or deadline passes.
func waitFor(deadline time.Time, p *process, ready func() bool) error {
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready: %v", p.err)
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v", ReadyTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// tail is the end of a log, for a failure message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return fmt.Sprintf("--- %s (end):\n%s", filepath.Base(path), b)
}
