package check_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/mototest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

func TestMain(m *testing.M) {
	code := m.Run()
	mototest.Stop()
	os.Exit(code)
}

type result struct {
	code        int
	out, errOut string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	streams, out, errOut := cmdutil.Test()
	f := root.NewFactory(streams)
	f.Now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
	code := root.Execute(context.Background(), f, args)
	return result{code, out.String(), errOut.String()}
}

// snapshot is every file under dir with its content and mtime.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		data := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			data = string(b)
		}
		out[p] = fi.ModTime().String() + " " + fi.Mode().String() + " " + data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s: %s changed or appeared", what, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s removed", what, p)
		}
	}
}

const config = "sets: [hooks]\ncatalog:\n  hooks:\n    direction: ingress\n    ports: [443]\n    static: [193.0.2.10, 193.0.2.20]\n"

// A healthy setup passes every check, one line each, exit 0; and the run
// writes nothing: no sink file, state, lock or metrics file changes or
// appears, even though the sinks are behind the desired sets.
func TestCheckPassesAndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	nft := filepath.Join(dir, "out", "pagerduty.nft")
	tmpl := filepath.Join(dir, "out", "allow.conf")
	st := filepath.Join(dir, "state")
	metrics := filepath.Join(dir, "out", "pdsafelist.prom")
	sinks := []string{"--sink", "nftables:" + nft + "?check=never", "--sink", "template:" + tmpl + "?format=nginx"}
	if r := run(t, append([]string{"sync", "--config", cfg, "--state-dir", st}, sinks...)...); r.code != 0 {
		t.Fatalf("first sync: %d %s", r.code, r.errOut)
	}
	// The sets now differ from what the sinks hold: a sync would write.
	if err := os.WriteFile(cfg, []byte(strings.Replace(config, "193.0.2.20", "193.0.2.30", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	time.Sleep(10 * time.Millisecond) // a write now would show in an mtime
	r := run(t, append([]string{"check", "--config", cfg, "--state-dir", st, "--metrics-file", metrics}, sinks...)...)
	if r.code != 0 {
		t.Fatalf("check: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	for _, want := range []string{
		"ok    config   " + cfg + " read",
		"ok    source   hooks: static catalog.hooks.static: 2 addresses",
		"ok    sink     nftables:" + nft + ": read, 2 entries ours",
		"ok    sink     nftables:" + nft + ": " + nft + " writable",
		"ok    sink     template:" + tmpl + ": read, 2 entries ours",
		"ok    state    " + st + " writable",
		"ok    metrics  " + metrics + " writable",
		"All 8 checks passed.",
	} {
		if !strings.Contains(r.out, want+"\n") {
			t.Errorf("no line %q in:\n%s", want, r.out)
		}
	}
	sameSnapshot(t, "check", before, snapshot(t, dir))
}

// Each failure is its own line, and any failure exits 1: a source that
// cannot be reached, a sink directory that cannot be written, a state
// directory that is a file, an unreachable notify endpoint.
func TestCheckReportsEachFailure(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere but on a read-only mount; the read-only
		// case is below, and this one needs an unwritable directory.
		t.Log("running as root: the unwritable directory is a file's path")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	bad := config + "    urls: [\"https://127.0.0.1:1/list.json\"]\n"
	if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	r := run(t, "check", "--config", cfg, "--state-dir", file, "--timeout", "5s",
		"--sink", "template:"+filepath.Join(file, "sub", "allow.conf"),
		"--notify-routing-key", "R0UT1NGKEY0123456789", "--notify-url", "https://127.0.0.1:1/v2/enqueue")
	if r.code != 1 || !strings.Contains(r.errOut, "preflight: ") {
		t.Fatalf("code %d, want 1\n%s%s", r.code, r.out, r.errOut)
	}
	for _, want := range []string{
		"FAIL  source   hooks: http https://127.0.0.1:1/list.json: ",
		"ok    source   hooks: static catalog.hooks.static: 2 addresses",
		"FAIL  sink     template:" + filepath.Join(file, "sub", "allow.conf") + ": " + filepath.Join(file, "sub", "allow.conf") + " not writable: " + file + " is not a directory",
		"FAIL  state    ",
		"FAIL  notify   https://127.0.0.1:1/v2/enqueue unreachable: ",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("no line %q in:\n%s", want, r.out)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(r.out), "\n") {
		if !strings.HasPrefix(l, "ok    ") && !strings.HasPrefix(l, "FAIL  ") {
			t.Errorf("line %q is not one check", l)
		}
	}
	sameSnapshot(t, "check", before, snapshot(t, dir))
}

// A sink that loads rules into the kernel: check reads the live table in
// a network namespace, reports nft's version, and leaves the ruleset
// exactly as it was although the sets changed.
func TestCheckLeavesTheRulesetAlone(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	sinkFlag := "nftables:" + filepath.Join(dir, "pd.nft") + "?apply=true&enforce=ingress&netns=" + p.Server
	if r := run(t, "sync", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--sink", sinkFlag); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.errOut)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(config, "193.0.2.20", "193.0.2.30", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ruleset := func() string {
		out, err := p.Exec(p.Server, "nft", "list", "ruleset")
		if err != nil {
			t.Fatalf("nft list ruleset: %v %s", err, out)
		}
		return string(out)
	}
	before, files := ruleset(), snapshot(t, dir)
	if !strings.Contains(before, "193.0.2.20") {
		t.Fatalf("sync loaded no table:\n%s", before)
	}
	r := run(t, "check", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--sink", sinkFlag)
	if r.code != 0 || !strings.Contains(r.out, "ok    nft      nftables v") || !strings.Contains(r.out, "may change kernel rules") {
		t.Fatalf("check: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if after := ruleset(); after != before {
		t.Errorf("check changed the ruleset:\nbefore\n%s\nafter\n%s", before, after)
	}
	// Not even the nftables sink's read cache (.NAME.verified, the ruleset
	// generation it last found equal to the file) is written: check and a
	// dry run write nothing anywhere. Both wrote it before.
	sameSnapshot(t, "check", files, snapshot(t, dir))
	if r := run(t, "sync", "--dry-run", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--sink", sinkFlag); r.code != 0 {
		t.Fatalf("sync --dry-run: %d %s", r.code, r.errOut)
	}
	sameSnapshot(t, "sync --dry-run", files, snapshot(t, dir))
	if after := ruleset(); after != before {
		t.Errorf("sync --dry-run changed the ruleset:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// A cloud sink is read, never written: moto's security group is the same
// after check although the sets changed.
func TestCheckLeavesTheCloudAlone(t *testing.T) {
	url := mototest.URL(t)
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_CONFIG_FILE": "/nonexistent",
		"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_EC2": ""} {
		t.Setenv(k, v)
	}
	c := ec2.NewFromConfig(mototest.Config(), func(o *ec2.Options) { o.BaseEndpoint = aws.String(url) })
	sg, err := c.CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{GroupName: aws.String("check"), Description: aws.String("test")})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdsafelist.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	sinkFlag := "ec2:" + *sg.GroupId + "?region=us-east-1&endpoint=" + url
	if r := run(t, "sync", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--sink", sinkFlag); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.errOut)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(config, "193.0.2.20", "193.0.2.30", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	rules := func() string {
		out, err := c.DescribeSecurityGroupRules(context.Background(), &ec2.DescribeSecurityGroupRulesInput{})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, r := range out.SecurityGroupRules {
			b.WriteString(aws.ToString(r.SecurityGroupRuleId) + " " + aws.ToString(r.CidrIpv4) + " " + aws.ToString(r.Description) + "\n")
		}
		return b.String()
	}
	before := rules()
	if !strings.Contains(before, "193.0.2.20/32") {
		t.Fatalf("sync wrote no rule:\n%s", before)
	}
	r := run(t, "check", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--sink", sinkFlag)
	if r.code != 0 || !strings.Contains(r.out, "ok    sink     ec2:") {
		t.Fatalf("check: code %d\n%s%s", r.code, r.out, r.errOut)
	}
	if after := rules(); after != before {
		t.Errorf("check changed the group:\nbefore\n%s\nafter\n%s", before, after)
	}
}
