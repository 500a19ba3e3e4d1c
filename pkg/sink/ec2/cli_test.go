package ec2_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/ec2fake"
)

// cli runs pdsafelist against the fake with a static set, credentials from
// the environment, and no AWS files or instance metadata.
type cli struct {
	t   *testing.T
	dir string
}

func newCLI(t *testing.T, static ...string) *cli {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_EC2": "",
	} {
		t.Setenv(k, v)
	}
	c := &cli{t: t, dir: t.TempDir()}
	c.config(static...)
	return c
}

func (c *cli) config(static ...string) {
	cfg := fmt.Sprintf("sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [%s]\n", strings.Join(static, ", "))
	if err := os.WriteFile(filepath.Join(c.dir, "pdsafelist.yaml"), []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cli) run(args ...string) (int, string, string) {
	return c.runContext(context.Background(), args...)
}

func (c *cli) runContext(ctx context.Context, args ...string) (int, string, string) {
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
	base := []string{"sync", "--config", filepath.Join(c.dir, "pdsafelist.yaml"), "--state-dir", filepath.Join(c.dir, "state")}
	code := root.Execute(ctx, f, append(base, args...))
	return code, out.String(), errOut.String()
}

func TestCLISyncThenNoChanges(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	c := newCLI(t, "193.0.2.10", "2001:db9::10")
	sinkFlag := "--sink=ec2:" + sg + "?endpoint=" + f.URL
	code, out, errOut := c.run(sinkFlag, "--dry-run", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, "Plan: 2 to add, 0 to remove.") {
		t.Fatalf("dry run: code %d\n%s%s", code, out, errOut)
	}
	if n := len(f.Rules(sg)); n != 0 {
		t.Fatalf("dry run changed the group: %d rules", n)
	}
	if code, out, errOut := c.run(sinkFlag); code != 0 || !strings.Contains(out, "ec2:us-east-1/"+sg) {
		t.Fatalf("sync: code %d\n%s%s", code, out, errOut)
	}
	got := f.Rules(sg)
	if len(got) != 2 || got[0].Description != "pdsafelist:hooks" || got[1].CIDR != "2001:db9::10/128" {
		t.Fatalf("rules: %+v", got)
	}
	f.ResetCalls()
	code, out, _ = c.run(sinkFlag, "--detailed-exitcode")
	if code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("second sync: code %d\n%s", code, out)
	}
	for action := range f.Calls() {
		if ec2fake.Mutating(action) {
			t.Errorf("second sync called %s", action)
		}
	}
}

// AWS_ENDPOINT_URL_EC2 reaches the client through the SDK's config
// loading; a failing target is one line with its name and AWS error code,
// and does not stop the other target.
func TestCLIEndpointFromEnvAndOneFailingTarget(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	c := newCLI(t, "193.0.2.10")
	t.Setenv("AWS_ENDPOINT_URL_EC2", f.URL)
	missing := "sg-0123456789abcdef0"
	code, out, errOut := c.run("--sink", "ec2:"+missing, "--sink", "ec2:"+sg)
	if code != 1 {
		t.Fatalf("code %d\n%s%s", code, out, errOut)
	}
	want := "error: read ec2:us-east-1/" + missing + ": DescribeSecurityGroups: InvalidGroup.NotFound: "
	if !strings.HasPrefix(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("stderr %q, want one line starting %q", errOut, want)
	}
	if len(f.Rules(sg)) != 1 {
		t.Errorf("the healthy target was not applied: %v", f.Rules(sg))
	}
}

func TestCLIRuleLimitRefusedExit3(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	sg := f.AddGroup()
	var addrs []string
	for i := 1; i <= 61; i++ {
		addrs = append(addrs, fmt.Sprintf("198.52.100.%d", 2*i))
	}
	c := newCLI(t, addrs...)
	for _, extra := range [][]string{{"--dry-run"}, nil} {
		code, out, errOut := c.run(append([]string{"--sink", "ec2:" + sg + "?endpoint=" + f.URL}, extra...)...)
		if code != 3 || !strings.Contains(errOut, "refused by ec2-rule-limit guard") || !strings.Contains(errOut, "prefix list") {
			t.Errorf("%v: code %d\n%s%s", extra, code, out, errOut)
		}
	}
	if n := len(f.Rules(sg)); n != 0 {
		t.Errorf("refused plan changed the group: %d rules", n)
	}
}

func TestCLIPrefixListByName(t *testing.T) {
	f := ec2fake.New()
	defer f.Close()
	c := newCLI(t, "193.0.2.10", "193.0.2.20", "2001:db9::10")
	sinkFlag := "--sink=ec2-prefix-list:pagerduty-hooks?endpoint=" + f.URL + "&max_entries=10"
	if code, out, errOut := c.run(sinkFlag); code != 0 {
		t.Fatalf("sync: code %d\n%s%s", code, out, errOut)
	}
	id, ok := f.ListByName("pagerduty-hooks")
	if !ok {
		t.Fatal("no list")
	}
	l, _ := f.List(id)
	if len(l.Entries) != 2 || l.MaxEntries != 10 {
		t.Errorf("list %+v", l)
	}
	if code, out, _ := c.run(sinkFlag, "--detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("second sync: code %d\n%s", code, out)
	}
}

func TestCLIBadOwnerIDRefusedAtOpen(t *testing.T) {
	c := newCLI(t, "193.0.2.10")
	// The config's owner_id is refused before any sink opens
	// (pkg/config); the sink's own owner_id option is EC2's to check.
	code, _, errOut := c.run("--sink", "ec2:sg-0123456789abcdef0?owner_id=prod<eu>", "--dry-run")
	if code != 1 || !strings.Contains(errOut, "EC2 allows only") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}
