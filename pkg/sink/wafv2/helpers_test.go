package wafv2

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/wafv2"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/mototest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	mototest.Stop()
	os.Exit(code)
}

// motoServer returns a freshly reset moto_server's URL.
func motoServer(t *testing.T) string { return mototest.URL(t) }

// testClient talks to endpoint with static credentials and a fast
// retryer.
func testClient(endpoint string) *wafv2.Client {
	cfg := mototest.Config()
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
