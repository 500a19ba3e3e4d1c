package wafv2

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/awsconfig"
	"github.com/pdsafelist/pdsafelist/pkg/clock"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// The factory builds its client the way a user's shell says: region and
// AWS_ENDPOINT_URL_WAFV2 from the environment, reaching moto.
func TestFactoryReachesEndpointFromEnvironment(t *testing.T) {
	url := motoServer(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL_WAFV2", url)
	reg := sink.Registry{"aws-wafv2-ipset": Factory}
	spec, err := reg.ParseFlag("aws-wafv2-ipset:from-env?sets=events&family=ipv4")
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{OwnerID: "ops", AWS: &awsconfig.Loader{}})
	if err != nil {
		t.Fatal(err)
	}
	w := s.(*IPSet)
	if w.Name() != "aws-wafv2-ipset:us-east-1/regional/from-env" {
		t.Errorf("name %q", w.Name())
	}
	w.sleep = clock.Sleep
	if _, err := sync1(t, w, events("54.1.1.1/32", "2001:db9::5/128")); err != nil {
		t.Fatal(err)
	}
	st, err := newSink(t, testClient(url), Options{IPSet: "from-env", AWSOptions: w.opts}).Current(context.Background())
	if err == nil || !strings.Contains(err.Error(), `belongs to owner "ops"`) {
		t.Errorf("a reader without the owner id: %v, want refused", err)
	}
	o := Options{IPSet: "from-env"}
	o.OwnerID = "ops"
	st, err = newSink(t, testClient(url), o).Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []plan.Entry{{Set: "events", Prefix: netip.MustParsePrefix("54.1.1.1/32")}}
	if diff := cmp.Diff(want, st.Owned, cmpEntries); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
}

// Bad options fail at open, with one line naming the sink.
func TestOptionErrors(t *testing.T) {
	reg := sink.Registry{"aws-wafv2-ipset": Factory}
	for flag, want := range map[string]string{
		"aws-wafv2-ipset:bad name":                            "ipset",
		"aws-wafv2-ipset:x?scope=GLOBAL":                      "scope",
		"aws-wafv2-ipset:x?family=ipv5":                       "family",
		"aws-wafv2-ipset:x?scope=CLOUDFRONT&region=eu-west-1": "us-east-1",
		"aws-wafv2-ipset:x?role_arn=nope":                     "role_arn",
		"aws-wafv2-ipset:x?colour=blue":                       "colour",
	} {
		spec, err := reg.ParseFlag(flag)
		if err == nil {
			_, err = reg.Open(spec, sink.Env{AWS: &awsconfig.Loader{}})
		}
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line mentioning %q", flag, err, want)
		}
	}
}
