package sink_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

func TestWriteAtomicCreatesMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "nftables.d", "pagerduty.nft")
	if err := sink.WriteAtomic(path, []byte("table inet x {}\n")); err != nil {
		t.Fatalf("WriteAtomic: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "table inet x {}\n" {
		t.Fatalf("read back = %q, %v", got, err)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if fi.IsDir() {
			want = os.ModeDir | 0o755
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), want)
		}
	}
}

// Each failure names the path the operator gave, never the temp file.
func TestWriteAtomicErrorsNameTheFinalPath(t *testing.T) {
	tmp := t.TempDir()
	notDir := filepath.Join(tmp, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	isDir := filepath.Join(tmp, "dir.nft")
	if err := os.MkdirAll(filepath.Join(isDir, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"read-only directory":   filepath.Join(sinktest.ReadOnlyDir(t), "pagerduty.nft"),
		"parent is a file":      filepath.Join(notDir, "sub", "pagerduty.nft"),
		"target is a directory": isDir,
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			err := sink.WriteAtomic(path, []byte("x\n"))
			if err == nil {
				t.Fatal("WriteAtomic succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name %s", msg, path)
			}
			base := filepath.Base(path)
			if strings.Contains(msg, "."+base) || strings.Contains(msg, "/."+strings.TrimSuffix(base, filepath.Ext(base))) {
				t.Errorf("error %q names a temp file", msg)
			}
		})
	}
}
