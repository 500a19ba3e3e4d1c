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
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

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
				s, err := config.Defaults().Apply(file)
				if err == nil {
					err = s.Validate()
				}
				if err == nil {
					_, err = s.SelectedSets()
				}
				if err != nil {
					t.Errorf("%s: embedded config: %v", f, err)
				}
			}
		}
	}
	for _, k := range []string{"CronJob", "DaemonSet", "ConfigMap", "ServiceAccount"} {
		if !kinds[k] {
			t.Errorf("no %s manifest", k)
		}
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
		data = bytes.ReplaceAll(data, []byte("/usr/local/bin/pdsafelist"), []byte(bin))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
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

func TestCronLineHasSixFields(t *testing.T) {
	data, err := os.ReadFile("cron/pdsafelist.cron")
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

// The README shows the IAM policy the project ships, not a copy that
// drifted from it.
func TestReadmePolicyMatchesFile(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "#### Minimal IAM policy")
	if !ok {
		t.Fatal("README has no Minimal IAM policy section")
	}
	_, block, ok := strings.Cut(after, "```json\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("README's IAM policy section has no json block")
	}
	file, err := os.ReadFile("aws/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal([]byte(block), &a); err != nil {
		t.Fatalf("README policy: %v", err)
	}
	if err := json.Unmarshal(file, &b); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	if diff := cmp.Diff(b, a); diff != "" {
		t.Errorf("README policy differs from scripts/aws/iam-policy.json (-file +readme):\n%s", diff)
	}
}

// The annotated example config loads, and every sink it shows opens: an
// example that fails to parse or names a bad option teaches the wrong thing.
func TestExampleConfigSinksOpen(t *testing.T) {
	file, err := config.Load("../testdata/pdsafelist.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := config.Defaults().Apply(file)
	if err != nil {
		t.Fatal(err)
	}
	// No AWS credentials are needed to open a sink, only to use it.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	reg := root.Registry()
	types := map[string]bool{}
	for i := range s.Sinks {
		spec, err := reg.FromConfig(&s.Sinks[i], i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Open(spec, sink.Env{OwnerID: s.OwnerID}); err != nil {
			t.Errorf("sink %d (%s): %v", i, spec.Type, err)
		}
		types[spec.Type] = true
	}
	for _, want := range reg.Types() {
		if !types[want] {
			t.Errorf("the example config shows no %s sink", want)
		}
	}
}
