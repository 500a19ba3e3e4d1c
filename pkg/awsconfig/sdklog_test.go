package awsconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/wafv2"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// jsonLines parses every line of a JSON log; a plain-text line fails.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %q", l)
			continue
		}
		out = append(out, m)
	}
	return out
}

// The SDK's own warning (IMDSv1 fallback, when the token request is
// refused) goes through slog: with a JSON handler, every line is JSON.
func TestSDKLogIsJSON(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r) // no token (IMDSv1 only), no role
	}))
	defer imds.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	var buf bytes.Buffer
	l := &Loader{Context: context.Background(), Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	cfg, err := l.Config(sink.AWSTarget{Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = cfg.Credentials.Retrieve(context.Background())
	found := false
	for _, m := range jsonLines(t, buf.String()) {
		if strings.Contains(m["msg"].(string), "falling back to IMDSv1") && m["level"] == "WARN" && m["from"] == "aws-sdk" {
			found = true
		}
	}
	if !found {
		t.Errorf("no IMDSv1 warning through slog in:\n%s", buf.String())
	}
}

// Each AWS call's debug line names its service, operation and region,
// for WAFv2 as for EC2.
func TestCallLogNamesTheCall(t *testing.T) {
	isolate(t)
	waf := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = w.Write([]byte(`{"IPSets":[]}`))
	}))
	defer waf.Close()
	f := ec2fake.New()
	defer f.Close()
	var buf bytes.Buffer
	l := &Loader{Context: context.Background(), Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	cfg, err := l.Config(sink.AWSTarget{Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	w := wafv2.NewFromConfig(cfg, func(o *wafv2.Options) { o.BaseEndpoint = aws.String(waf.URL) })
	if _, err := w.ListIPSets(context.Background(), &wafv2.ListIPSetsInput{Scope: "REGIONAL"}); err != nil {
		t.Fatal(err)
	}
	if err := describe(cfg, f.URL); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"WAFV2 ListIPSets eu-west-1": false, "EC2 DescribeSecurityGroups eu-west-1": false}
	for _, m := range jsonLines(t, buf.String()) {
		if m["msg"] != "aws call" {
			continue
		}
		key := m["service"].(string) + " " + m["operation"].(string) + " " + m["region"].(string)
		if _, ok := want[key]; !ok {
			t.Errorf("unexpected call line %v", m)
		}
		want[key] = true
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no call line %q in:\n%s", k, buf.String())
		}
	}
}
