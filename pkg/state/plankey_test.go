package state

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Runs that make the key at the same moment all end with the one key on
// disk, 0600, in a directory others cannot enter.
func TestPlanKeyMadeOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := PlanKey(dir, true)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) || len(k) != 64 {
			t.Fatalf("keys differ or are short: %q %q", k, keys[0])
		}
	}
	fi, err := os.Stat(filepath.Join(dir, PlanKeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("new state directory %v, want 0700", di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left beside the key: %v", entries)
	}
}

// A key in a place no key should be is refused, never waited on.
func TestPlanKeyRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PlanKeyFileName)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := PlanKey(dir, true); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO: %v", err)
	}
	if _, err := PlanKey(t.TempDir(), false); err == nil {
		t.Fatal("a missing key was made without create")
	}
}
