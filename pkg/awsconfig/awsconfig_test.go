package awsconfig

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// isolate leaves the SDK static credentials and nothing else.
func isolate(t *testing.T) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "SECRET",
		"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CA_BUNDLE": "",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_EC2": "", "AWS_ENDPOINT_URL_STS": ""} {
		t.Setenv(k, v)
	}
}

func describe(cfg aws.Config, endpoint string) error {
	c := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(endpoint); o.RetryMaxAttempts = 1 })
	_, err := c.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{})
	return err
}

// --ca-file is trusted for AWS as for the lists: behind a proxy that
// re-signs TLS, EC2 is reached only with it.
func TestCAFileTrusted(t *testing.T) {
	isolate(t)
	f := ec2fake.New()
	defer f.Close()
	u, _ := url.Parse(f.URL)
	proxy := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(u))
	defer proxy.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		caFile string
		ok     bool
	}{{"", false}, {ca, true}} {
		l := &Loader{Context: context.Background(), CAFile: tc.caFile}
		cfg, err := l.Config(sink.AWSTarget{Region: "us-east-1"})
		if err != nil {
			t.Fatal(err)
		}
		err = describe(cfg, proxy.URL)
		if tc.ok && err != nil {
			t.Errorf("with the CA file: %v", err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("without the CA file: %v, want a certificate error", err)
		}
	}
	_, err := (&Loader{CAFile: filepath.Join(t.TempDir(), "none.pem")}).Config(sink.AWSTarget{Region: "us-east-1"})
	if err == nil || !strings.Contains(err.Error(), "ca file") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing CA file: %v", err)
	}
}

// role_arn is assumed through STS, and EC2 is called with the role's
// credentials, not the base ones.
func TestRoleAssumedThroughSTS(t *testing.T) {
	isolate(t)
	var mu sync.Mutex
	var form url.Values
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		form = r.PostForm
		mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		w.Write([]byte(`<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>ASIAROLE</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/pdsafelist</Arn><AssumedRoleId>AROA:pdsafelist</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult></AssumeRoleResponse>`))
	}))
	defer sts.Close()
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	f := ec2fake.New()
	defer f.Close()
	var auth string
	u, _ := url.Parse(f.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	ec2srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		rp.ServeHTTP(w, r)
	}))
	defer ec2srv.Close()
	cfg, err := (&Loader{Context: context.Background()}).Config(sink.AWSTarget{Region: "us-east-1", RoleARN: "arn:aws:iam::123456789012:role/r", ExternalID: "ext-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := describe(cfg, ec2srv.URL); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if form.Get("Action") != "AssumeRole" || form.Get("RoleArn") != "arn:aws:iam::123456789012:role/r" || form.Get("ExternalId") != "ext-1" || form.Get("RoleSessionName") != "pdsafelist" {
		t.Errorf("STS request %v", form)
	}
	if !strings.Contains(auth, "Credential=ASIAROLE/") {
		t.Errorf("EC2 signed with %q, want the role's key", auth)
	}
}

// A cancelled context stops loading, which may ask the instance metadata
// service (defaults_mode auto).
func TestCancelledContextStopsLoading(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_DEFAULTS_MODE", "auto")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Loader{Context: ctx}).Config(sink.AWSTarget{Region: "us-east-1"})
	if err == nil || !strings.Contains(err.Error(), "context canceled") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %v, want one line saying the context was cancelled", err)
	}
}
