package wafv2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/wafv2"
	"github.com/aws/aws-sdk-go-v2/service/wafv2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/ec2"
)

// fake is an in-memory WAF holding one IP set, with lock tokens, and
// errors to hand out before the next calls of an operation.
type fake struct {
	mu     sync.Mutex
	exists bool
	tags   map[string]string
	addrs  []string
	desc   string
	token  int
	calls  map[string]int
	fail   map[string][]error
	// onGet runs after a read, e.g. to change the set behind the reader.
	onGet func()
}

const fakeID = "0a1b2c3d-0000-4000-8000-000000000001"

func newFake() *fake {
	return &fake{calls: map[string]int{}, fail: map[string][]error{}, tags: map[string]string{}}
}

func (f *fake) call(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if errs := f.fail[op]; len(errs) > 0 {
		f.fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

func (f *fake) take() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = map[string]int{}
	return out
}

func (f *fake) ListIPSets(_ context.Context, in *wafv2.ListIPSetsInput, _ ...func(*wafv2.Options)) (*wafv2.ListIPSetsOutput, error) {
	if err := f.call("ListIPSets"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &wafv2.ListIPSetsOutput{}
	if f.exists {
		out.IPSets = []types.IPSetSummary{{Name: aws.String("allow"), Id: aws.String(fakeID), ARN: aws.String("arn:aws:wafv2:us-east-1:123456789012:regional/ipset/allow/" + fakeID)}}
	}
	return out, nil
}

func (f *fake) ListTagsForResource(_ context.Context, in *wafv2.ListTagsForResourceInput, _ ...func(*wafv2.Options)) (*wafv2.ListTagsForResourceOutput, error) {
	if err := f.call("ListTagsForResource"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info := &types.TagInfoForResource{ResourceARN: in.ResourceARN}
	for k, v := range f.tags {
		info.TagList = append(info.TagList, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return &wafv2.ListTagsForResourceOutput{TagInfoForResource: info}, nil
}

func (f *fake) GetIPSet(_ context.Context, in *wafv2.GetIPSetInput, _ ...func(*wafv2.Options)) (*wafv2.GetIPSetOutput, error) {
	if err := f.call("GetIPSet"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	out := &wafv2.GetIPSetOutput{LockToken: aws.String(fmt.Sprint(f.token)), IPSet: &types.IPSet{Name: in.Name, Id: in.Id,
		IPAddressVersion: types.IPAddressVersionIpv4, Addresses: append([]string(nil), f.addrs...), Description: aws.String(f.desc)}}
	hook := f.onGet
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out, nil
}

func (f *fake) CreateIPSet(_ context.Context, in *wafv2.CreateIPSetInput, _ ...func(*wafv2.Options)) (*wafv2.CreateIPSetOutput, error) {
	if err := f.call("CreateIPSet"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exists, f.addrs, f.desc = true, in.Addresses, aws.ToString(in.Description)
	for _, t := range in.Tags {
		f.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return &wafv2.CreateIPSetOutput{}, nil
}

func (f *fake) UpdateIPSet(_ context.Context, in *wafv2.UpdateIPSetInput, _ ...func(*wafv2.Options)) (*wafv2.UpdateIPSetOutput, error) {
	if err := f.call("UpdateIPSet"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.LockToken) != fmt.Sprint(f.token) {
		return nil, &types.WAFOptimisticLockException{Message: aws.String("stale lock token")}
	}
	f.token++
	f.addrs, f.desc = in.Addresses, aws.ToString(in.Description)
	return &wafv2.UpdateIPSetOutput{NextLockToken: aws.String(fmt.Sprint(f.token))}, nil
}

// bump is a change by someone else: a new lock token.
func (f *fake) bump() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.token++
}

func events(ps ...string) plan.DesiredSet {
	d := plan.DesiredSet{Name: "events", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}}
	for _, p := range ps {
		d.Prefixes = append(d.Prefixes, netip.MustParsePrefix(p))
	}
	return d
}

// sync1 is one run without the max-delete guard: read, then sink.Step's
// shape, plan and check, then apply.
func sync1(t *testing.T, s *IPSet, desired ...plan.DesiredSet) (plan.SinkPlan, error) {
	t.Helper()
	ctx := context.Background()
	st, err := s.Current(ctx)
	if err != nil {
		return plan.SinkPlan{}, err
	}
	known := []string{}
	for _, d := range desired {
		known = append(known, d.Name)
	}
	step := sink.Step{Sink: s, Limits: plan.DefaultLimits, Known: known, Force: true}
	p, err := step.Plan(desired, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := step.Check(p); err != nil {
		return p, err
	}
	if p.HasChanges() {
		return p, s.Apply(ctx, p)
	}
	return p, nil
}

func owned() *fake {
	f := newFake()
	f.exists, f.tags[ec2.ManagedTag] = true, "managed"
	return f
}

// One run reads once (ListIPSets, tags, GetIPSet) and writes at most one
// UpdateIPSet; a re-run writes nothing.
func TestOneReadOneUpdate(t *testing.T) {
	f := owned()
	s := newSink(t, f, Options{IPSet: "allow"})
	if _, err := sync1(t, s, events("44.2.0.0/24", "54.1.1.1/32")); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"ListIPSets": 1, "ListTagsForResource": 1, "GetIPSet": 1, "UpdateIPSet": 1}
	if diff := cmp.Diff(want, f.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"44.2.0.0/24", "54.1.1.1/32"}, f.addrs); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if f.desc != "pdsafelist sets=events map=a2" {
		t.Errorf("description %q", f.desc)
	}
	if _, err := sync1(t, s, events("44.2.0.0/24", "54.1.1.1/32")); err != nil {
		t.Fatal(err)
	}
	if n := f.take()["UpdateIPSet"]; n != 0 {
		t.Errorf("re-run made %d UpdateIPSet calls", n)
	}
}

// Someone else updates the set between our read and our write: the
// update is refused with WAFOptimisticLockException, we re-read once and
// the second update goes through.
func TestLockConflictRereadsAndRetries(t *testing.T) {
	f := owned()
	s := newSink(t, f, Options{IPSet: "allow"})
	first := true
	f.onGet = func() {
		if first {
			first = false
			f.bump()
		}
	}
	if _, err := sync1(t, s, events("54.1.1.1/32")); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"ListIPSets": 2, "ListTagsForResource": 2, "GetIPSet": 2, "UpdateIPSet": 2}
	if diff := cmp.Diff(want, f.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"54.1.1.1/32"}, f.addrs); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
}

// A set that changes under every read: the retries stop at the bound
// with a one-line error.
func TestLockConflictBound(t *testing.T) {
	f := owned()
	s := newSink(t, f, Options{IPSet: "allow"})
	f.onGet = f.bump
	_, err := sync1(t, s, events("54.1.1.1/32"))
	if err == nil {
		t.Fatal("sync against a set that always changes succeeded")
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "WAFOptimisticLockException") {
		t.Errorf("error %q: want one line naming the lock exception", err)
	}
	if n := f.take()["UpdateIPSet"]; n != maxConflicts+1 {
		t.Errorf("%d UpdateIPSet calls, want %d", n, maxConflicts+1)
	}
	if len(f.addrs) != 0 {
		t.Errorf("set changed: %v", f.addrs)
	}
}

// Throttling that outlasts the SDK's retries fails the run with one line
// and writes nothing.
func TestThrottledReadFails(t *testing.T) {
	f := owned()
	f.fail["GetIPSet"] = []error{&types.WAFLimitsExceededException{Message: aws.String("Rate exceeded\n(too many calls)")}}
	s := newSink(t, f, Options{IPSet: "allow"})
	_, err := sync1(t, s, events("54.1.1.1/32"))
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "GetIPSet: WAFLimitsExceededException") {
		t.Fatalf("error %v: want one line naming GetIPSet and the code", err)
	}
	if n := f.take()["UpdateIPSet"]; n != 0 {
		t.Errorf("%d UpdateIPSet calls after a failed read", n)
	}
}

// Throttling that the SDK's retryer absorbs: a proxy in front of moto
// answers ThrottlingException to the first two calls of each operation;
// the sync still converges with the client NewClient builds.
func TestThrottlingRetriedBySDK(t *testing.T) {
	target, _ := url.Parse(motoServer(t))
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	seen := map[string]int{}
	throttled := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		mu.Lock()
		seen[op]++
		n := seen[op]
		if n <= 2 {
			throttled++
		}
		mu.Unlock()
		if n <= 2 {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s := newSink(t, testClient(srv.URL), Options{IPSet: "throttled"})
	if _, err := sync1(t, s, events("54.1.1.1/32")); err != nil {
		t.Fatal(err)
	}
	st, err := newSink(t, testClient(target.String()), Options{IPSet: "throttled"}).Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]plan.Entry{{Set: "events", Prefix: netip.MustParsePrefix("54.1.1.1/32")}}, st.Owned, cmpEntries); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	if throttled < 4 {
		t.Errorf("only %d throttled answers: the proxy did not get in the way", throttled)
	}
}

// The 10,000-address limit is a guard, refused before any write.
func TestMaxAddressesGuard(t *testing.T) {
	f := owned()
	s := newSink(t, f, Options{IPSet: "allow"})
	var ps []string
	for i := range MaxAddresses + 1 {
		ps = append(ps, netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}).String()+"/32")
	}
	_, err := sync1(t, s, events(ps...))
	var g *plan.GuardError
	if !errors.As(err, &g) || g.Guard != plan.GuardWAFv2MaxAddrs {
		t.Fatalf("error %v: want the wafv2-max-addresses guard", err)
	}
	if n := f.take()["UpdateIPSet"]; n != 0 {
		t.Errorf("%d UpdateIPSet calls", n)
	}
	// Exactly the limit is fine.
	if _, err := sync1(t, s, events(ps[:MaxAddresses]...)); err != nil {
		t.Fatal(err)
	}
	if len(f.addrs) != MaxAddresses {
		t.Errorf("set holds %d addresses", len(f.addrs))
	}
}

// Sets whose addresses interleave need a long map: past 256 characters the
// plan is refused, naming the fix.
func TestSetMapGuard(t *testing.T) {
	f := owned()
	s := newSink(t, f, Options{IPSet: "allow"})
	a, b := events(), events()
	b.Name = "webhooks"
	for i := range 200 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 0, 0, byte(i)}), 32).String()
		if i%2 == 0 {
			a.Prefixes = append(a.Prefixes, netip.MustParsePrefix(p))
		} else {
			b.Prefixes = append(b.Prefixes, netip.MustParsePrefix(p))
		}
	}
	_, err := sync1(t, s, a, b)
	var g *plan.GuardError
	if !errors.As(err, &g) || g.Guard != plan.GuardWAFv2SetMap || !strings.Contains(err.Error(), "route fewer sets") {
		t.Fatalf("error %v: want the wafv2-set-map guard", err)
	}
	if n := f.take()["UpdateIPSet"]; n != 0 {
		t.Errorf("%d UpdateIPSet calls", n)
	}
}

// A set without our tag is refused before it is read further.
func TestUntaggedRefused(t *testing.T) {
	f := newFake()
	f.exists = true
	s := newSink(t, f, Options{IPSet: "allow"})
	_, err := sync1(t, s, events("54.1.1.1/32"))
	if err == nil || !strings.Contains(err.Error(), "not made by pdsafelist") {
		t.Fatalf("error %v", err)
	}
	if c := f.take(); c["GetIPSet"]+c["UpdateIPSet"] != 0 {
		t.Errorf("calls on a foreign set: %v", c)
	}
}

func TestMapRoundTrip(t *testing.T) {
	addrs := []netip.Prefix{netip.MustParsePrefix("44.0.0.0/24"), netip.MustParsePrefix("44.0.1.0/24"), netip.MustParsePrefix("54.0.0.1/32"), netip.MustParsePrefix("193.0.2.10/32")}
	labels := []string{"events", "events", "webhooks", "events"}
	d, err := encodeMap(addrs, labels)
	if err != nil {
		t.Fatal(err)
	}
	if d != "pdsafelist sets=events,webhooks map=a2b1a1" {
		t.Errorf("map %q", d)
	}
	got, ok := decodeMap(d, len(addrs))
	if !ok {
		t.Fatal("map does not decode")
	}
	if diff := cmp.Diff(labels, got); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	// A map that does not fit or parse labels nothing: the addresses are
	// read back unlabelled.
	for _, bad := range []struct {
		desc string
		n    int
	}{{d, 3}, {d, 5}, {"PagerDuty webhooks - managed by pdsafelist", 4}, {"", 4}, {"pdsafelist sets=Events map=a4", 4}} {
		if _, ok := decodeMap(bad.desc, bad.n); ok {
			t.Errorf("map %q over %d addresses decodes", bad.desc, bad.n)
		}
	}
	if _, ok := decodeMap("", 0); !ok {
		t.Error("an empty set without a map does not decode")
	}
}

var cmpEntries = cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})

// A set handed over by tagging it holds addresses with no map: they are
// unlabelled, so an address a set wants is kept and the rest show in the
// plan as removals that max-delete counts, never vanish unannounced.
func TestHandedOverAddressesArePlanned(t *testing.T) {
	f := owned()
	f.addrs = []string{"44.9.9.9/32"}
	s := newSink(t, f, Options{IPSet: "allow"})
	p, err := sync1(t, s, events("54.1.1.1/32"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Remove) != 1 || p.Remove[0].Prefix != netip.MustParsePrefix("44.9.9.9/32") {
		t.Errorf("plan removes %v; want 44.9.9.9/32", p.Remove)
	}
	if err := (plan.MaxDelete{ByCount: true}).Check(p); err == nil {
		t.Error("max-delete 0 does not count the removal")
	}
	if diff := cmp.Diff([]string{"54.1.1.1/32"}, f.addrs); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
}

// Issue 20 item 3: an operator rewrites the description in the console.
// The next run must not read the addresses as a retired set: it plans no
// removal (max-delete has nothing to count), keeps every address and
// writes the map again; the same with fewer than 10 addresses, where
// max-delete would not have stopped it.
func TestEditedDescriptionRemovesNothing(t *testing.T) {
	for _, n := range []int{20, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := owned()
			s := newSink(t, f, Options{IPSet: "allow"})
			hooks := events()
			hooks.Name, hooks.Direction = "webhooks", plan.Ingress
			for i := range n {
				hooks.Prefixes = append(hooks.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{44, 242, 69, byte(i)}), 32))
			}
			if _, err := sync1(t, s, hooks, events("54.1.1.1/32")); err != nil {
				t.Fatal(err)
			}
			want, desc := append([]string(nil), f.addrs...), f.desc
			f.desc = "PagerDuty webhooks - managed by pdsafelist"
			p, err := sync1(t, s, hooks, events("54.1.1.1/32"))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Remove)+len(p.Add) != 0 || len(p.Retired) != 0 {
				t.Errorf("plan adds %d and removes %d (retired %d); want none", len(p.Add), len(p.Remove), len(p.Retired))
			}
			if err := plan.DefaultMaxDelete.Check(p); err != nil {
				t.Errorf("max-delete: %v", err)
			}
			if diff := cmp.Diff(want, f.addrs); diff != "" {
				t.Errorf("addresses (-before +after):\n%s", diff)
			}
			if f.desc != desc {
				t.Errorf("description %q; want the map %q written again", f.desc, desc)
			}
		})
	}
}

// Issue 20 item 7: the set changes between our read and our write. The
// plan printed was made from the first read, so writing anything else
// would apply a plan nobody saw: the sink refuses with one line and
// writes nothing, and the next run plans against what is there.
func TestLockConflictAfterChangeWritesNothing(t *testing.T) {
	f := owned()
	s := newSink(t, f, Options{IPSet: "allow"})
	if _, err := sync1(t, s, events("44.2.0.1/32", "44.2.0.2/32")); err != nil {
		t.Fatal(err)
	}
	// After our read, someone else removes 44.2.0.2 (a new lock token).
	changed := false
	f.onGet = func() {
		if !changed {
			changed = true
			f.mu.Lock()
			f.addrs, f.desc = []string{"44.2.0.1/32"}, "pdsafelist sets=events map=a1"
			f.token++
			f.mu.Unlock()
		}
	}
	want := events("44.2.0.1/32", "44.2.0.2/32", "44.2.0.3/32")
	p, err := sync1(t, s, want)
	written := append([]string(nil), f.addrs...)
	var printed []string
	for _, e := range p.Result() {
		printed = append(printed, e.Prefix.String())
	}
	if err == nil {
		t.Fatalf("the sync over a changed set succeeded: printed plan holds %v, the set now holds %v", printed, written)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "changed") {
		t.Errorf("error %q: want one line saying the set changed", err)
	}
	if diff := cmp.Diff([]string{"44.2.0.1/32"}, written); diff != "" {
		t.Errorf("the refused sync wrote (-other's write +now):\n%s", diff)
	}
	f.onGet = nil
	p, err = sync1(t, s, want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"44.2.0.1/32", "44.2.0.2/32", "44.2.0.3/32"}, f.addrs); diff != "" {
		t.Errorf("the next run wrote (-want +got):\n%s", diff)
	}
	if len(p.Add) != 2 {
		t.Errorf("the next run adds %v; want 44.2.0.2 and 44.2.0.3", p.Add)
	}
}
