package ec2

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/mototest"
)

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

// counter counts logical API calls (not retries) by operation name.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[op]++
}

// take returns the counts so far and starts again from zero.
func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// testClient talks to endpoint with static credentials, a fast retryer
// and a call counter.
func testClient(endpoint string) (*ec2.Client, *counter) {
	c := &counter{n: map[string]int{}}
	cfg := mototest.Config()
	cl := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				c.add(awsmiddleware.GetOperationName(ctx))
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
		})
	})
	return cl, c
}

func spec(arg string) sink.Spec { return sink.Spec{Origin: "--sink ec2:" + arg} }

func newGroup(t *testing.T, api API, id string, mod func(*GroupOptions)) *Group {
	t.Helper()
	o := GroupOptions{GroupID: id, RuleLimit: DefaultRuleLimit}
	if mod != nil {
		mod(&o)
	}
	g, err := NewGroup(api, "us-east-1", o, spec(id), sink.Env{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func newList(t *testing.T, api API, ref string, mod func(*PrefixListOptions)) (*PrefixList, *[]time.Duration) {
	t.Helper()
	o := PrefixListOptions{PrefixList: ref, MaxEntries: DefaultMaxEntries}
	if mod != nil {
		mod(&o)
	}
	l, err := NewPrefixList(api, "us-east-1", o, spec(ref), sink.Env{})
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	var mu sync.Mutex
	l.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		slept = append(slept, d)
		mu.Unlock()
		return ctx.Err()
	}
	return l, &slept
}

// target is what the CLI needs of a sink.
type target interface {
	sink.Sink
	sink.Shaper
	sink.Checker
}

// cycle plans and applies like the sync command, without the max-delete
// guard (sinktest.Sync). It returns the plan and the first error of read,
// shape, check or apply.
func cycle(t *testing.T, s target, desired []plan.DesiredSet) (plan.SinkPlan, error) {
	t.Helper()
	return sinktest.Sync(context.Background(), sink.Step{Sink: s, Force: true}, desired)
}

func mustCycle(t *testing.T, s target, desired []plan.DesiredSet) plan.SinkPlan {
	t.Helper()
	p, err := cycle(t, s, desired)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func set(name string, dir plan.Direction, ports []uint16, ps ...string) plan.DesiredSet {
	return plan.DesiredSet{Name: name, Direction: dir, Protocol: plan.TCP, Ports: ports, Prefixes: prefixes(ps...)}
}

var p443 = []uint16{443}

func mutating(calls map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range calls {
		if ec2fake.Mutating(k) {
			out[k] = v
		}
	}
	return out
}

func sinkEnv() sink.Env { return sink.Env{} }
