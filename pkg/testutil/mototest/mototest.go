// Package mototest runs one moto_server per test binary, the independent
// AWS emulator the EC2 and WAF sinks are tested against.
package mototest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

var moto struct {
	once sync.Once
	url  string
	cmd  *exec.Cmd
	log  strings.Builder
	err  error
}

// URL returns a freshly reset moto_server's URL, starting it on first use.
func URL(t testing.TB) string {
	t.Helper()
	testutil.Integration(t, false, "moto_server")
	moto.once.Do(start)
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

// Stop ends the server; call it from TestMain after m.Run.
func Stop() {
	if moto.cmd != nil {
		// moto_server runs under a pyenv shim: end the whole group.
		_ = syscall.Kill(-moto.cmd.Process.Pid, syscall.SIGKILL)
		_ = moto.cmd.Wait()
	}
}

func start() {
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

// Config is the AWS config the sinks' tests talk to moto (and the Go
// fakes) with: us-east-1, static credentials, three attempts a call with
// backoff kept short.
func Config() aws.Config {
	return aws.Config{Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 5 * time.Millisecond
			})
		}}
}
