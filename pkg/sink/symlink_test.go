package sink_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// A sink path that is a symlink (/etc/nginx/pagerduty.conf pointing into
// a config repository, say) is written through: the target gets the new
// content with its permissions, and the link stays a link (issue 20
// item 7).
func TestWriteAtomicWritesThroughSymlinks(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T, dir string) (link, target string){
		"absolute": func(t *testing.T, dir string) (string, string) {
			target := existing(t, filepath.Join(dir, "real", "allow.conf"))
			return symlink(t, target, filepath.Join(dir, "allow.conf")), target
		},
		"relative": func(t *testing.T, dir string) (string, string) {
			target := existing(t, filepath.Join(dir, "real", "allow.conf"))
			return symlink(t, "real/allow.conf", filepath.Join(dir, "allow.conf")), target
		},
		"chain": func(t *testing.T, dir string) (string, string) {
			target := existing(t, filepath.Join(dir, "real", "allow.conf"))
			mid := symlink(t, "../real/allow.conf", filepath.Join(dir, "mid", "allow.conf"))
			return symlink(t, mid, filepath.Join(dir, "allow.conf")), target
		},
		// The first write creates the file the link points to.
		"dangling": func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "real", "new", "allow.conf")
			return symlink(t, target, filepath.Join(dir, "allow.conf")), target
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			link, target := setup(t, dir)
			was, _ := os.Readlink(link)
			if err := sink.WriteAtomic(link, []byte("new\n")); err != nil {
				t.Fatalf("WriteAtomic: %v", err)
			}
			fi, err := os.Lstat(link)
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("%s is no longer a symlink: %v %v", link, fi.Mode(), err)
			}
			if now, _ := os.Readlink(link); now != was {
				t.Errorf("the link now points to %q, was %q", now, was)
			}
			if got, err := os.ReadFile(target); err != nil || string(got) != "new\n" {
				t.Errorf("target %s holds %q, %v; want the new content", target, got, err)
			}
			want := os.FileMode(0o640)
			if name == "dangling" {
				want = 0o644
			}
			if fi, err := os.Stat(target); err != nil || fi.Mode() != want {
				t.Errorf("target mode %v, %v; want %v", fi.Mode(), err, want)
			}
		})
	}
}

// A link that never reaches a file is refused in one line naming the
// path, and nothing is written.
func TestWriteAtomicRefusesSymlinkLoop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	symlink(t, b, a)
	symlink(t, a, b)
	err := sink.WriteAtomic(a, []byte("new\n"))
	if err == nil || !strings.Contains(err.Error(), a) || oneline.Check(err.Error()) != nil {
		t.Fatalf("WriteAtomic over a loop = %v; want one line naming %s", err, a)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the directory holds %d entries, want the two links", len(entries))
	}
}

func existing(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}
