package synccmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two sinks writing one file, here through the iptables-file sink's derived
// IPv6 twin, are refused when the sinks are opened, before anything is
// written, dry run or not.
func TestSinksSharingAFileAreRefused(t *testing.T) {
	for _, extra := range [][]string{nil, {"--dry-run"}} {
		dir := t.TempDir()
		v4, v6 := filepath.Join(dir, "X.v4"), filepath.Join(dir, "X.v6")
		args := append([]string{"sync", "--sink", "iptables-file:" + v4 + "?check=never", "--sink", "nftables:" + v6 + "?check=never"}, extra...)
		code, out, errOut := cli(t, dir, args...)
		if code != 1 || !strings.Contains(errOut, "iptables-file:"+v4+" and nftables:"+v6+" both write "+v6) {
			t.Fatalf("%v: code %d\nstdout: %s\nstderr: %s", extra, code, out, errOut)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("not one line: %q", errOut)
		}
		for _, p := range []string{v4, v6} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%v: %s was written", extra, p)
			}
		}
	}
}

// A sink path that is a symlink to another sink's file is that file: the
// two are refused as one target before anything is written (issue 20
// item 7).
func TestSinksSharingAFileThroughASymlinkAreRefused(t *testing.T) {
	dir := t.TempDir()
	real, link := filepath.Join(dir, "real.conf"), filepath.Join(dir, "link.conf")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, dir, "sync", "--sink", "template:"+real, "--sink", "template:"+link)
	if code != 1 || !strings.Contains(errOut, "template:"+real+" and template:"+link+" both write "+real) {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, err := os.Stat(real); !os.IsNotExist(err) {
		t.Errorf("%s was written: %v", real, err)
	}
	if to, err := os.Readlink(link); err != nil || to != real {
		t.Errorf("the link changed: %q, %v", to, err)
	}
}
