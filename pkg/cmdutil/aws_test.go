package cmdutil_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/ec2"
	"github.com/pdsafelist/pdsafelist/pkg/sink/wafv2"
)

type recordingAWS struct{ got []sink.AWSTarget }

func (r *recordingAWS) Config(t sink.AWSTarget) (aws.Config, error) {
	r.got = append(r.got, t)
	return aws.Config{Region: t.Region}, nil
}

// AWS sinks take their config from the factory's one seam, each with its
// own region, profile and role; none loads a config of its own.
func TestAWSSinksGetConfigFromFactory(t *testing.T) {
	streams, _, _ := cmdutil.Test()
	rec := &recordingAWS{}
	f := &cmdutil.Factory{IO: streams, Global: &cmdutil.GlobalOptions{}, AWS: rec,
		Registry: sink.Registry{"ec2": ec2.GroupFactory, "aws-wafv2-ipset": wafv2.Factory}}
	env := f.SinkEnv(context.Background(), config.Defaults())
	for _, flag := range []string{
		"ec2:sg-0123456789abcdef0?region=eu-west-1&profile=prod&role_arn=arn:aws:iam::123456789012:role/fw&external_id=x1&max_attempts=7",
		"aws-wafv2-ipset:hooks?scope=CLOUDFRONT&profile=edge",
	} {
		spec, err := f.Registry.ParseFlag(flag)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Registry.Open(spec, env); err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
	}
	want := []sink.AWSTarget{
		{Region: "eu-west-1", Profile: "prod", RoleARN: "arn:aws:iam::123456789012:role/fw", ExternalID: "x1", MaxAttempts: 7},
		// CloudFront's WAF lives in us-east-1.
		{Region: "us-east-1", Profile: "edge"},
	}
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
}
