package ec2_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// hangingIMDS accepts connections and never answers, like an instance
// metadata address that a firewall lets connect but nothing serves.
func hangingIMDS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	return "http://" + ln.Addr().String()
}

// Cancelling the command (a signal, --timeout) stops loading the AWS
// config: with defaults_mode auto the SDK asks the instance metadata
// service while loading, and that ran on a background context before.
func TestCLICancelStopsAWSConfigLoading(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	c := newCLI(t, "193.0.2.10")
	t.Setenv("AWS_DEFAULTS_MODE", "auto")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", hangingIMDS(t))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	began := time.Now()
	code, out, errOut := c.runContext(ctx, "--sink=ec2:"+sg+"?endpoint="+f.URL, "--dry-run")
	took := time.Since(began)
	if took > 1500*time.Millisecond {
		t.Errorf("the run took %s after being cancelled at 200ms; loading the AWS config ignored the command's context", took)
	}
	if code == 0 || !strings.Contains(errOut, "context canceled") {
		t.Errorf("code %d, want a failure naming the cancellation\n%s%s", code, out, errOut)
	}
}
