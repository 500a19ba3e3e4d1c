package wafv2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/wafv2"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

// moto is one moto_server for the whole package, started on first use.
var moto struct {
	once sync.Once
	url  string
	cmd  *exec.Cmd
	log  strings.Builder
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if moto.cmd != nil {
		// moto_server runs under a pyenv shim: end the whole group.
		_ = syscall.Kill(-moto.cmd.Process.Pid, syscall.SIGKILL)
		_ = moto.cmd.Wait()
	}
	os.Exit(code)
}

func startMoto() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		moto.err = err
		return
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command("moto_server", "-H", "127.0.0.1", "-p", port)
	cmd.Stdout, cmd.Stderr = &moto.log, &moto.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if moto.err = cmd.Start(); moto.err != nil {
		return
	}
	moto.cmd = cmd
	moto.url = "http://127.0.0.1:" + port
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Post(moto.url+"/moto-api/reset", "application/json", nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	moto.err = errors.New("moto_server did not answer within 60s")
}

// motoServer returns a freshly reset moto_server's URL.
func motoServer(t *testing.T) string {
	t.Helper()
	testutil.Integration(t, false, "moto_server")
	moto.once.Do(startMoto)
	if moto.err != nil {
		t.Fatalf("moto_server: %v\n%s", moto.err, moto.log.String())
	}
	resp, err := http.Post(moto.url+"/moto-api/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return moto.url
}

// testClient talks to endpoint with static credentials and a fast
// retryer.
func testClient(endpoint string) *wafv2.Client {
	cfg := aws.Config{Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 5 * time.Millisecond
			})
		}}
	return NewClient(cfg, endpoint)
}

func spec(arg string) sink.Spec { return sink.Spec{Origin: "--sink aws-wafv2-ipset:" + arg} }

func newSink(t testing.TB, api API, o Options) *IPSet {
	t.Helper()
	s, err := New(api, "us-east-1", o, spec(o.IPSet), sink.Env{})
	if err != nil {
		t.Fatal(err)
	}
	s.sleep = func(context.Context, time.Duration) error { return nil }
	return s
}
