package wafv2

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/wafv2"
	"github.com/aws/aws-sdk-go-v2/service/wafv2/types"
	"github.com/aws/smithy-go"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/ec2"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

var harness = sinktest.Harness{
	Type: "aws-wafv2-ipset",
	Skip: map[sinktest.Case]string{
		sinktest.ForeignCovering: "WAF entries carry no marker: ownership is per IP set, and every address in a set we own is ours",
		sinktest.FileDirectory:   "the sink writes through the WAF API, not files",
	},
}

func TestConformanceMoto(t *testing.T) {
	url := motoServer(t)
	h := harness
	h.New = func(t testing.TB) *sinktest.Target { return ipsetTarget(t, url) }
	sinktest.Run(t, h)
}

var names atomic.Int64

// flaky passes calls through, counts the writes, and when armed fails the
// next write.
type flaky struct {
	API
	mu     sync.Mutex
	writes int
	armed  bool
}

var errInjected = &smithy.GenericAPIError{Code: "SinktestInjected", Message: "injected failure"}

func (f *flaky) write() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed {
		f.armed = false
		return errInjected
	}
	f.writes++
	return nil
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *flaky) CreateIPSet(ctx context.Context, in *wafv2.CreateIPSetInput, o ...func(*wafv2.Options)) (*wafv2.CreateIPSetOutput, error) {
	if err := f.write(); err != nil {
		return nil, err
	}
	return f.API.CreateIPSet(ctx, in, o...)
}

func (f *flaky) UpdateIPSet(ctx context.Context, in *wafv2.UpdateIPSetInput, o ...func(*wafv2.Options)) (*wafv2.UpdateIPSetOutput, error) {
	if err := f.write(); err != nil {
		return nil, err
	}
	return f.API.UpdateIPSet(ctx, in, o...)
}

// byName finds the IP set called name, or nil.
func byName(t testing.TB, raw *wafv2.Client, name string) *types.IPSetSummary {
	t.Helper()
	out, err := raw.ListIPSets(context.Background(), &wafv2.ListIPSetsInput{Scope: types.ScopeRegional})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out.IPSets {
		if aws.ToString(s.Name) == name {
			return &s
		}
	}
	return nil
}

func ipsetTarget(t testing.TB, url string) *sinktest.Target {
	t.Helper()
	raw := testClient(url)
	ctx := context.Background()
	api := &flaky{API: raw}
	name := fmt.Sprintf("sinktest-%d", names.Add(1))
	open := func(t testing.TB) sink.Sink { return newSink(t, api, Options{IPSet: name}) }
	get := func(t testing.TB) (*types.IPSetSummary, *wafv2.GetIPSetOutput) {
		t.Helper()
		sum := byName(t, raw, name)
		if sum == nil {
			return nil, nil
		}
		out, err := raw.GetIPSet(ctx, &wafv2.GetIPSetInput{Name: sum.Name, Id: sum.Id, Scope: types.ScopeRegional})
		if err != nil {
			t.Fatal(err)
		}
		return sum, out
	}
	// edit rewrites the set by hand, keeping or rewriting its map.
	edit := func(t testing.TB, change func(addrs []netip.Prefix, labels []string) ([]netip.Prefix, []string), remap bool) {
		t.Helper()
		sum, out := get(t)
		if sum == nil {
			if _, err := raw.CreateIPSet(ctx, &wafv2.CreateIPSetInput{Name: aws.String(name), Scope: types.ScopeRegional,
				IPAddressVersion: types.IPAddressVersionIpv4, Addresses: []string{},
				Tags: []types.Tag{{Key: aws.String(ec2.ManagedTag), Value: aws.String("managed")}}}); err != nil {
				t.Fatal(err)
			}
			sum, out = get(t)
		}
		var addrs []netip.Prefix
		for _, a := range out.IPSet.Addresses {
			addrs = append(addrs, netip.MustParsePrefix(a).Masked())
		}
		slices.SortFunc(addrs, netip.Prefix.Compare)
		labels, _ := decodeMap(aws.ToString(out.IPSet.Description), len(addrs))
		addrs, labels = change(addrs, labels)
		desc := aws.ToString(out.IPSet.Description)
		if remap {
			var err error
			if desc, err = encodeMap(addrs, labels); err != nil {
				t.Fatal(err)
			}
		}
		list := []string{}
		for _, a := range addrs {
			list = append(list, a.String())
		}
		if _, err := raw.UpdateIPSet(ctx, &wafv2.UpdateIPSetInput{Name: sum.Name, Id: sum.Id, Scope: types.ScopeRegional,
			Addresses: list, Description: aws.String(desc), LockToken: out.LockToken}); err != nil {
			t.Fatal(err)
		}
	}
	// Addresses are kept sorted with their labels, as the sink writes them.
	insert := func(addrs []netip.Prefix, labels []string, p netip.Prefix, set string) ([]netip.Prefix, []string) {
		i, _ := slices.BinarySearchFunc(addrs, p, netip.Prefix.Compare)
		return slices.Insert(addrs, i, p), slices.Insert(labels, i, set)
	}
	arn := func(t testing.TB) *string {
		t.Helper()
		sum := byName(t, raw, name)
		if sum == nil {
			t.Fatal("no IP set to tamper with")
		}
		return sum.ARN
	}
	// Each free-text setting the sink sends to AWS, with v in it.
	hostile := func(with func(o *ec2.AWSOptions, env *sink.Env, v string)) func(testing.TB, string) (sink.Sink, error) {
		return func(_ testing.TB, v string) (sink.Sink, error) {
			var o ec2.AWSOptions
			var env sink.Env
			with(&o, &env, v)
			return New(api, "us-east-1", Options{IPSet: name, AWSOptions: o}, spec(name), env)
		}
	}
	return &sinktest.Target{
		Open: open,
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id":        hostile(func(_ *ec2.AWSOptions, env *sink.Env, v string) { env.OwnerID = v }),
			"owner_id option": hostile(func(o *ec2.AWSOptions, _ *sink.Env, v string) { o.OwnerID = v }),
			"tags value":      hostile(func(o *ec2.AWSOptions, _ *sink.Env, v string) { o.Tags = ec2.Tags{"team": v} }),
			"tags key":        hostile(func(o *ec2.AWSOptions, _ *sink.Env, v string) { o.Tags = ec2.Tags{v: "ops"} }),
		},
		Writes: func(testing.TB) int { return api.count() },
		Snapshot: func(t testing.TB) string {
			_, out := get(t)
			if out == nil {
				return "no IP set"
			}
			addrs := slices.Clone(out.IPSet.Addresses)
			slices.Sort(addrs)
			return fmt.Sprintf("%s %q\n%s\n", out.IPSet.IPAddressVersion, aws.ToString(out.IPSet.Description), strings.Join(addrs, "\n"))
		},
		InjectOwned: func(t testing.TB, e plan.Entry) {
			edit(t, func(a []netip.Prefix, l []string) ([]netip.Prefix, []string) { return insert(a, l, e.Prefix, e.Set) }, true)
		},
		// Remove one address in the console, which leaves the description
		// as it was: the map no longer fits.
		Drift: func(t testing.TB) {
			edit(t, func(a []netip.Prefix, l []string) ([]netip.Prefix, []string) {
				if len(a) == 0 {
					t.Fatal("no address to remove")
				}
				return a[1:], l[1:]
			}, false)
		},
		// An operator rewrites the description in the console (issue 20
		// item 3); the addresses stay.
		Unlabel: func(t testing.TB) {
			t.Helper()
			sum, out := get(t)
			if sum == nil {
				t.Fatal("no IP set to edit")
			}
			if _, err := raw.UpdateIPSet(ctx, &wafv2.UpdateIPSetInput{Name: sum.Name, Id: sum.Id, Scope: types.ScopeRegional,
				Addresses: out.IPSet.Addresses, Description: aws.String("PagerDuty webhooks - managed by pdsafelist"), LockToken: out.LockToken}); err != nil {
				t.Fatal(err)
			}
		},
		FailNext: func(testing.TB) {
			api.mu.Lock()
			api.armed = true
			api.mu.Unlock()
		},
		Tamper: map[string]func(testing.TB){
			// Our tag removed: the set is someone else's now.
			"untagged": func(t testing.TB) {
				if _, err := raw.UntagResource(ctx, &wafv2.UntagResourceInput{ResourceARN: arn(t), TagKeys: []string{ec2.ManagedTag}}); err != nil {
					t.Fatal(err)
				}
			},
			// Tagged by another installation.
			"other-owner": func(t testing.TB) {
				if _, err := raw.TagResource(ctx, &wafv2.TagResourceInput{ResourceARN: arn(t),
					Tags: []types.Tag{{Key: aws.String(ec2.ManagedTag + ":owner"), Value: aws.String("someone-else")}}}); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
}
