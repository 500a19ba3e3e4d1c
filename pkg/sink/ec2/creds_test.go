package ec2

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/awsconfig"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// With no credentials anywhere, the error is one line with a hint, not the
// SDK's whole provider chain.
func TestMissingCredentialsIsOneLineWithHint(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	reg := sink.Registry{"ec2": GroupFactory}
	spec, err := reg.ParseFlag("ec2:sg-0123456789abcdef0?region=us-east-1&endpoint=http://127.0.0.1:1&max_attempts=1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{AWS: &awsconfig.Loader{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Current(context.Background())
	if err == nil {
		t.Fatal("read without credentials succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "no AWS credentials found") || !strings.Contains(msg, "AWS_PROFILE") || strings.Contains(msg, "\n") {
		t.Errorf("got %q, want one line saying no AWS credentials found with a hint", msg)
	}
	for _, leak := range []string{"IMDS", "failed to refresh cached credentials", "get identity"} {
		if strings.Contains(msg, leak) {
			t.Errorf("%q leaks the SDK chain (%s)", msg, leak)
		}
	}
}

// At debug each AWS call is logged with its operation, time and error,
// through the logger the sink was given.
func TestAWSCallsLoggedAtDebug(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := sink.Registry{"ec2": GroupFactory}
	spec, err := reg.ParseFlag("ec2:sg-0123456789abcdef0?region=us-east-1&endpoint=http://127.0.0.1:1&max_attempts=1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := reg.Open(spec, sink.Env{Logger: log, AWS: &awsconfig.Loader{Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current(context.Background()); err == nil {
		t.Fatal("read from a closed port succeeded")
	}
	for _, want := range []string{"aws call", "service=EC2", "operation=DescribeSecurityGroupRules", "took=", "err="} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}
