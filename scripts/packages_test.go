package scripts

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// needsSource are files the docs name for contributors: they run from a
// clone (go run, go test), so the release archive leaves them out.
var needsSource = []string{"scripts/bench.sh", "scripts/demo.sh", "scripts/update-golden.sh",
	"scripts/systemd/nspawn-check.sh", "scripts/k8s/build-control-plane.sh", "scripts/release-check.sh", "scripts/release-build.sh"}

// documentedFiles lists every file of the repository that README.md,
// docs/ and the help text name, directories expanded.
func documentedFiles(t *testing.T) []string {
	t.Helper()
	var texts []string
	docs, _ := filepath.Glob("../docs/*.md")
	more, _ := filepath.Glob("../docs/*/*.md")
	for _, f := range append(append([]string{"../README.md", "../docs/pdsafelist.yaml", "../pkg/cmdutil/sources.go"}, docs...), more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(data))
	}
	named := regexp.MustCompile(`\b(?:scripts|docs|testdata)/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
	seen := map[string]bool{}
	for _, text := range texts {
		for _, p := range named.FindAllString(text, -1) {
			fi, err := os.Stat("../" + p)
			switch {
			case err != nil:
			case fi.IsDir():
				_ = filepath.Walk("../"+p, func(q string, fi os.FileInfo, err error) error {
					if err == nil && fi.Mode().IsRegular() {
						seen[strings.TrimPrefix(q, "../")] = true
					}
					return nil
				})
			default:
				seen[p] = true
			}
		}
	}
	var out []string
	for p := range seen {
		if strings.HasSuffix(p, ".go") || slices.Contains(needsSource, p) || strings.Contains(p, "/testdata/") {
			continue
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// globRegexp turns a goreleaser file glob into a regexp: ** spans
// directories, * and ? do not.
func globRegexp(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		switch {
		case strings.HasPrefix(g[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case g[i] == '*':
			b.WriteString("[^/]*")
		case g[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

type goreleaser struct {
	Archives []struct {
		Files []string `yaml:"files"`
	} `yaml:"archives"`
	Nfpms []struct {
		Formats  []string `yaml:"formats"`
		Bindir   string   `yaml:"bindir"`
		Contents []struct {
			Src  string `yaml:"src"`
			Dst  string `yaml:"dst"`
			Type string `yaml:"type"`
		} `yaml:"contents"`
	} `yaml:"nfpms"`
	Dockers []struct {
		Tags []string `yaml:"tags"`
	} `yaml:"dockers_v2"`
}

func loadGoreleaser(t *testing.T) goreleaser {
	t.Helper()
	data, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var g goreleaser
	if err := yaml.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// Every file the docs name (the Prometheus rules, the vendor example, the
// IAM policy, the units...) is in the release archive.
func TestArchiveHoldsEveryDocumentedFile(t *testing.T) {
	g := loadGoreleaser(t)
	if len(g.Archives) == 0 {
		t.Fatal("no archives")
	}
	files := documentedFiles(t)
	for _, want := range []string{"docs/sources.example.yaml", "scripts/prometheus/pdsafelist.rules.yml"} {
		if !slices.Contains(files, want) {
			t.Errorf("the docs no longer name %s; this test's list of what they name is broken", want)
		}
	}
	for _, f := range files {
		found := false
		for _, g := range g.Archives[0].Files {
			if globRegexp(g).MatchString(f) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s is named in the docs but not in the archive's files", f)
		}
	}
}

// The .deb and .rpm hold the binary, the unit and timer, the default
// config (kept on upgrade), man pages, completions, the state directory
// and the cron file; no image is tagged latest.
func TestPackagesHoldWhatTheDocsPromise(t *testing.T) {
	g := loadGoreleaser(t)
	if len(g.Nfpms) != 1 {
		t.Fatalf("%d nfpms entries, want 1", len(g.Nfpms))
	}
	n := g.Nfpms[0]
	if !slices.Contains(n.Formats, "deb") || !slices.Contains(n.Formats, "rpm") || n.Bindir != "/usr/bin" {
		t.Errorf("formats %v bindir %s: want deb and rpm, /usr/bin (the unit's ExecStart)", n.Formats, n.Bindir)
	}
	unit, err := os.ReadFile("systemd/pdsafelist.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+n.Bindir+"/pdsafelist ") {
		t.Errorf("the unit does not run %s/pdsafelist", n.Bindir)
	}
	dst := map[string]string{}
	for _, c := range n.Contents {
		dst[c.Dst] = c.Type
		if c.Src != "" && !strings.HasPrefix(c.Src, "build/") {
			if m, _ := filepath.Glob("../" + c.Src); len(m) == 0 {
				t.Errorf("package content %s matches no file", c.Src)
			}
		}
	}
	for _, want := range []string{"/usr/lib/systemd/system/pdsafelist.service", "/usr/lib/systemd/system/pdsafelist.timer",
		"/etc/pdsafelist/pdsafelist.yaml", "/var/lib/pdsafelist", "/usr/share/man/man1/",
		"/usr/share/bash-completion/completions/pdsafelist", "/usr/share/zsh/vendor-completions/_pdsafelist",
		"/usr/share/fish/vendor_completions.d/pdsafelist.fish", "/usr/share/doc/pdsafelist/examples/cron.d/pdsafelist"} {
		if _, ok := dst[want]; !ok {
			t.Errorf("packages lack %s", want)
		}
	}
	if dst["/etc/pdsafelist/pdsafelist.yaml"] != "config|noreplace" {
		t.Errorf("the config is %q, want config|noreplace (an upgrade keeps the operator's edits)", dst["/etc/pdsafelist/pdsafelist.yaml"])
	}
	for _, d := range g.Dockers {
		if slices.Contains(d.Tags, "latest") {
			t.Error("an image is tagged latest")
		}
	}
}

// ReleaseTestEnv runs the goreleaser snapshot below: it builds goreleaser's
// whole pipeline and takes minutes, so it is opt-in (scripts/release-check.sh
// sets it) rather than under PDSAFELIST_REQUIRE_INTEGRATION.
const ReleaseTestEnv = "PDSAFELIST_RELEASE_TEST"

// A real goreleaser snapshot: the archive holds every documented file and
// the .deb holds what the packages promise.
func TestGoreleaserSnapshot(t *testing.T) {
	if os.Getenv(ReleaseTestEnv) != "1" {
		t.Skip("set " + ReleaseTestEnv + "=1 to run goreleaser (scripts/release-check.sh does)")
	}
	bin, err := exec.LookPath("goreleaser")
	if err != nil {
		t.Fatalf("goreleaser not on PATH: %v", err)
	}
	run := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return out
	}
	// The before hooks run the whole test suite; only gendocs is needed.
	run("go", "run", "./scripts/gendocs", "-out", "build/docs")
	run(bin, "release", "--snapshot", "--clean", "--skip=docker,publish,before,validate,sign")
	archives, _ := filepath.Glob("../dist/pdsafelist_*_linux_amd64.tar.gz")
	if len(archives) != 1 {
		t.Fatalf("archives %v, want one", archives)
	}
	f, err := os.Open(archives[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]bool{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		in[strings.TrimPrefix(h.Name, "./")] = true
	}
	for _, want := range append(documentedFiles(t), "pdsafelist", "build/docs/man/pdsafelist.1", "build/docs/completions/pdsafelist.bash") {
		if !in[want] {
			t.Errorf("archive %s lacks %s", filepath.Base(archives[0]), want)
		}
	}
	debs, _ := filepath.Glob("../dist/*_amd64.deb")
	if len(debs) != 1 {
		t.Fatalf("debs %v, want one", debs)
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("no dpkg-deb to list the package")
	}
	list := string(run("dpkg-deb", "-c", strings.TrimPrefix(debs[0], "../")))
	for _, want := range []string{"./usr/bin/pdsafelist", "./usr/lib/systemd/system/pdsafelist.service", "./usr/lib/systemd/system/pdsafelist.timer",
		"./etc/pdsafelist/pdsafelist.yaml", "./var/lib/pdsafelist/", "./usr/share/man/man1/pdsafelist-check.1",
		"./usr/share/bash-completion/completions/pdsafelist", "./usr/share/doc/pdsafelist/examples/cron.d/pdsafelist"} {
		if !strings.Contains(list, want) {
			t.Errorf("the .deb lacks %s:\n%s", want, list)
		}
	}
}
