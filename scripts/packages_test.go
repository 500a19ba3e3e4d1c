package scripts

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/testutil"
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

// globRegexp turns a goreleaser file glob into a regexp with the meaning
// goreleaser gives it (gobwas/glob through goreleaser/fileglob): ** is any
// run of characters, / included, and * and ? stop at /. So dir/**/* holds
// only files in subdirectories of dir, not dir's own files.
func globRegexp(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		switch {
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
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

// ReleaseTestEnv runs the goreleaser snapshot below outside CI
// (scripts/release-check.sh sets it); PDSAFELIST_REQUIRE_INTEGRATION=1 runs
// it too, as TestPackageInSystemdContainer installs its .deb anyway.
const ReleaseTestEnv = "PDSAFELIST_RELEASE_TEST"

// ReleaseAllEnv makes TestGoreleaserSnapshot build every target of
// .goreleaser.yaml (linux and darwin, amd64 and arm64); by default it
// builds linux/amd64 only, the archive and the .deb it checks.
const ReleaseAllEnv = "PDSAFELIST_RELEASE_ALL"

// writeSingleTargetConfig writes .goreleaser.yaml with its builds narrowed
// to linux/amd64. goreleaser release has no --single-target, and each
// target is a cold build of the whole binary (-trimpath has its own build
// cache entries): four of them took most of the snapshot's time. The
// archives, packages and their contents are the release's own.
func writeSingleTargetConfig(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	builds, _ := doc["builds"].([]any)
	if len(builds) == 0 {
		t.Fatal(".goreleaser.yaml has no builds")
	}
	for _, b := range builds {
		m, ok := b.(map[string]any)
		if !ok {
			t.Fatalf("a build is %T, want a map", b)
		}
		m["goos"] = []string{"linux"}
		m["goarch"] = []string{"amd64"}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot is one goreleaser snapshot per test process: the .tar.gz and
// the .deb for linux/amd64, or why there are none.
var snapshot struct {
	once         sync.Once
	archive, deb string
	err          error
}

// releaseSnapshot runs `goreleaser release --snapshot` once (with
// writeSingleTargetConfig unless ReleaseAllEnv is set) and returns the
// linux/amd64 archive and .deb, relative to this directory.
func releaseSnapshot(t *testing.T) (archive, deb string) {
	t.Helper()
	snapshot.once.Do(func() {
		snapshot.archive, snapshot.deb, snapshot.err = buildSnapshot(t)
	})
	if snapshot.err != nil {
		t.Fatal(snapshot.err)
	}
	return snapshot.archive, snapshot.deb
}

func buildSnapshot(t *testing.T) (archive, deb string, err error) {
	bin, err := exec.LookPath("goreleaser")
	if err != nil {
		return "", "", fmt.Errorf("goreleaser not on PATH (scripts/release-check.sh installs it): %w", err)
	}
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	// The before hooks run the whole test suite; only gendocs is needed.
	if err := run("go", "run", "./scripts/gendocs", "-out", "build/docs"); err != nil {
		return "", "", err
	}
	cfg := ".goreleaser.yaml"
	if os.Getenv(ReleaseAllEnv) != "1" {
		cfg = "build/goreleaser-snapshot.yaml"
		writeSingleTargetConfig(t, "../"+cfg)
	}
	if err := run(bin, "release", "--snapshot", "--clean", "-f", cfg, "--skip=docker,publish,before,validate,sign"); err != nil {
		return "", "", err
	}
	archives, _ := filepath.Glob("../dist/pdsafelist_*_linux_amd64.tar.gz")
	debs, _ := filepath.Glob("../dist/*_amd64.deb")
	if len(archives) != 1 || len(debs) != 1 {
		return "", "", fmt.Errorf("goreleaser made archives %v and packages %v, want one linux/amd64 of each", archives, debs)
	}
	return archives[0], debs[0], nil
}

// A real goreleaser snapshot: the archive holds every documented file and
// the .deb holds what the packages promise.
func TestGoreleaserSnapshot(t *testing.T) {
	if os.Getenv(ReleaseTestEnv) != "1" && !testutil.Required() {
		t.Skip("set " + ReleaseTestEnv + "=1 to run goreleaser (scripts/release-check.sh does)")
	}
	archive, deb := releaseSnapshot(t)
	f, err := os.Open(archive)
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
			t.Errorf("archive %s lacks %s", filepath.Base(archive), want)
		}
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("no dpkg-deb to list the package")
	}
	out, err := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c %s: %v\n%s", deb, err, out)
	}
	list := string(out)
	for _, want := range []string{"./usr/bin/pdsafelist", "./usr/lib/systemd/system/pdsafelist.service", "./usr/lib/systemd/system/pdsafelist.timer",
		"./etc/pdsafelist/pdsafelist.yaml", "./var/lib/pdsafelist/", "./usr/share/man/man1/pdsafelist-check.1",
		"./usr/share/bash-completion/completions/pdsafelist", "./usr/share/doc/pdsafelist/examples/cron.d/pdsafelist"} {
		if !strings.Contains(list, want) {
			t.Errorf("the .deb lacks %s:\n%s", want, list)
		}
	}
}
