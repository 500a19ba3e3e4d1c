package awsconfig

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// The EC2 client dials through the self-mark Control, so an egress
// enforce chain on 443 leaves the sink its endpoint.
func TestEC2ClientDialsThroughControl(t *testing.T) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "SECRET",
		"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_EC2": ""} {
		t.Setenv(k, v)
	}
	f := ec2fake.New()
	defer f.Close()
	var n atomic.Int32
	l := &Loader{Context: context.Background(), Control: func(_, _ string, _ syscall.RawConn) error { n.Add(1); return nil }}
	cfg, err := l.Config(sink.AWSTarget{Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(f.URL) })
	if _, err := client.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{}); err != nil {
		t.Fatal(err)
	}
	if n.Load() == 0 {
		t.Fatal("the EC2 client dialled without Control")
	}
}
