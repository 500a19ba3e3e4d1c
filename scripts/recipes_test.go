// Package scripts holds deployment recipes; this test validates them with
// the tools that can: a YAML parse, JSON parse, and systemd-analyze verify.
package scripts

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/awsconfig"
	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

func TestKubernetesManifestsParse(t *testing.T) {
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) < 2 {
		t.Fatalf("want the CronJob and DaemonSet manifests, found %v", files)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
				Data map[string]string `yaml:"data"`
			}
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc.APIVersion == "" || doc.Kind == "" || doc.Metadata.Name == "" {
				t.Errorf("%s: document without apiVersion, kind or name: %+v", f, doc)
			}
			kinds[doc.Kind] = true
			// The embedded config must load like a real one.
			if cfg, ok := doc.Data["pdsafelist.yaml"]; ok {
				file, err := config.Parse(f, []byte(cfg))
				if err != nil {
					t.Errorf("%s: embedded config: %v", f, err)
					continue
				}
				s := config.Defaults().Apply(file)
				err = s.Validate()
				if err == nil {
					_, err = s.SelectedSets()
				}
				if err != nil {
					t.Errorf("%s: embedded config: %v", f, err)
				}
			}
		}
	}
	for _, k := range []string{"CronJob", "DaemonSet", "Deployment", "ConfigMap", "ServiceAccount", "PersistentVolumeClaim", "Role", "RoleBinding"} {
		if !kinds[k] {
			t.Errorf("no %s manifest", k)
		}
	}
}

// A CronJob on an emptyDir starts every job with no retention state, so
// the subset answers of GSLB DNS make the firewall flap; the shipped one
// keeps its state on a claim.
func TestCronJobStatePersists(t *testing.T) {
	data, err := os.ReadFile("k8s/cronjob-ec2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("emptyDir:")) || !bytes.Contains(data, []byte("claimName: pdsafelist-state")) {
		t.Error("the CronJob's state volume must be the pdsafelist-state claim, not an emptyDir")
	}
}

func TestIAMPolicyIsJSON(t *testing.T) {
	data, err := os.ReadFile("aws/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Effect string
			Action any
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != "2012-10-17" || len(doc.Statement) == 0 {
		t.Errorf("policy = %+v", doc)
	}
	for _, want := range []string{"ec2:DescribeSecurityGroupRules", "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:ModifyManagedPrefixList"} {
		if !bytes.Contains(data, []byte(`"`+want+`"`)) {
			t.Errorf("policy lacks %s", want)
		}
	}
}

// systemd-analyze needs the ExecStart binary to exist, so the units are
// verified in a copy that points at a stand-in executable.
func TestSystemdUnitsVerify(t *testing.T) {
	testutil.Integration(t, false, "systemd-analyze")
	dir := t.TempDir()
	bin := filepath.Join(dir, "pdsafelist")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, name := range []string{"pdsafelist.service", "pdsafelist.timer"} {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/bin/pdsafelist"), []byte(bin))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	// The drop-ins are read from beside the unit, as from /etc/systemd/system.
	dropins, _ := filepath.Glob("systemd/dropins/*.conf")
	if err := os.Mkdir(filepath.Join(dir, "pdsafelist.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range dropins {
		data, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pdsafelist.service.d", filepath.Base(d)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...).CombinedOutput()
	// Messages about the host's own units are not ours to fix.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "pdsafelist") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}

// Debian's cron (run-parts naming) ignores /etc/cron.d files whose names
// hold anything but letters, digits, "_" and "-": a dot silently disables
// the job. The file is installed under its own name.
func TestCronFileNameIsInstallable(t *testing.T) {
	files, _ := filepath.Glob("cron/*")
	if len(files) == 0 {
		t.Fatal("no cron file")
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for _, f := range files {
		if !valid.MatchString(filepath.Base(f)) {
			t.Errorf("%s: Debian's cron skips this name in /etc/cron.d; use letters, digits, _ and - only", f)
		}
	}
}

// A ReadWritePaths entry that is missing on the host fails the whole unit
// with 226/NAMESPACE unless it starts with "-". Only the state directory,
// which systemd creates (StateDirectory=), may go without.
func TestSystemdOptionalPathsHaveDash(t *testing.T) {
	data, err := os.ReadFile("systemd/pdsafelist.service")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "ReadWritePaths="); ok {
			paths = append(paths, strings.Fields(v)...)
		}
	}
	if len(paths) == 0 {
		t.Fatal("no ReadWritePaths")
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "-") && p != "/var/lib/pdsafelist" {
			t.Errorf("ReadWritePaths entry %s may be missing on a host: prefix it with -", p)
		}
	}
	// The tool's own deadline must fire before systemd's, so the journal
	// says what hung rather than a bare timeout.
	if !strings.Contains(string(data), "TimeoutStartSec=15min") {
		t.Errorf("TimeoutStartSec must exceed --run-timeout (10m) plus --timeout (30s)")
	}
}

func TestCronLineHasSixFields(t *testing.T) {
	data, err := os.ReadFile("cron/pdsafelist")
	if err != nil {
		t.Fatal(err)
	}
	jobs := 0
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.Contains(strings.SplitN(l, " ", 2)[0], "=") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 7 || f[5] != "root" || f[6] != "pdsafelist" {
			t.Errorf("cron line %q: want 5 time fields, a user and the command", l)
		}
		jobs++
	}
	if jobs != 1 {
		t.Errorf("found %d jobs", jobs)
	}
}

// The ec2 sink's page shows the IAM policy the project ships, not a copy
// that drifted from it.
func TestReadmePolicyMatchesFile(t *testing.T) {
	readme, err := os.ReadFile("../docs/sinks/ec2.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n## Permissions\n")
	if !ok {
		t.Fatal("docs/sinks/ec2.md has no Permissions section")
	}
	_, block, ok := strings.Cut(after, "```json\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("docs/sinks/ec2.md's Permissions section has no json block")
	}
	file, err := os.ReadFile("aws/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal([]byte(block), &a); err != nil {
		t.Fatalf("docs/sinks/ec2.md policy: %v", err)
	}
	if err := json.Unmarshal(file, &b); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	if diff := cmp.Diff(b, a); diff != "" {
		t.Errorf("docs/sinks/ec2.md policy differs from scripts/aws/iam-policy.json (-file +page):\n%s", diff)
	}
}

// The reference config (every key, every sink type) loads, and every sink it
// shows opens: a reference that fails to parse or names a bad option teaches
// the wrong thing. The example to copy is checked by TestExampleConfigIsSafe.
func TestExampleConfigSinksOpen(t *testing.T) {
	file, err := config.Load("../testdata/pdsafelist.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	s := config.Defaults().Apply(file)
	// No AWS credentials are needed to open a sink, only to use it.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	types := openSinks(t, s)
	for _, want := range root.Registry().Types() {
		if !types[want] {
			t.Errorf("the example config shows no %s sink", want)
		}
	}
}

// The shipped alerting rules load and fire as their tests say, including
// the never-succeeded case that a staleness rule alone cannot see.
func TestPrometheusRules(t *testing.T) {
	testutil.Integration(t, false, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "pdsafelist.rules.yml"},
		{"test", "rules", "pdsafelist.rules.test.yml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// safeExample is the config the README tells people to copy.
const safeExample = "../docs/pdsafelist.yaml"

// Issue 13: the example people copy must be safe as it is: every setting
// the built-in default, and one sink that writes a file and blocks nothing
// (no fake routing key, no enforce, no public nameservers). Its
// "# EXAMPLE:" lines must load too once uncommented.
func TestExampleConfigIsSafe(t *testing.T) {
	data, err := os.ReadFile(safeExample)
	if err != nil {
		t.Fatal(err)
	}
	s := loadExample(t, data)
	if diff := cmp.Diff(config.Defaults(), s, cmpopts.IgnoreFields(config.Settings{}, "Sinks", "ConfigFile"), cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
		t.Errorf("%s sets more than the defaults (-default +example):\n%s", safeExample, diff)
	}
	if len(s.Sinks) != 1 {
		t.Fatalf("%s has %d sinks, want the one nftables file", safeExample, len(s.Sinks))
	}
	var opts map[string]any
	if err := s.Sinks[0].Decode(&opts); err != nil {
		t.Fatal(err)
	}
	if opts["type"] != "nftables" || (opts["enforce"] != nil && opts["enforce"] != "none") || opts["apply"] == true {
		t.Errorf("%s sink %v: want an nftables file with enforce none and apply false", safeExample, opts)
	}
	uncommented := strings.ReplaceAll(string(data), "# EXAMPLE: ", "")
	if uncommented == string(data) {
		t.Fatalf("%s has no # EXAMPLE: lines", safeExample)
	}
	loadExample(t, []byte(uncommented))
}

func loadExample(t *testing.T, data []byte) config.Settings {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pdsafelist.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := config.Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	s := config.Defaults().Apply(file)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	openSinks(t, s)
	return s
}

// openSinks opens every sink s configures, as a run would, and returns
// the types it opened.
func openSinks(t *testing.T, s config.Settings) map[string]bool {
	t.Helper()
	reg := root.Registry()
	types := map[string]bool{}
	for i := range s.Sinks {
		spec, err := reg.FromConfig(&s.Sinks[i], i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Open(spec, sink.Env{OwnerID: s.OwnerID, AWS: &awsconfig.Loader{}}); err != nil {
			t.Errorf("sink %d (%s): %v", i, spec.Type, err)
		}
		types[spec.Type] = true
	}
	return types
}
