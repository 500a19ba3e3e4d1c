package sinktest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Commands wraps the external commands a sink runs in scripts that log
// every call and can fail a chosen call once. A harness passes the
// scripts as the sink's command options (nft=, iptables=, ...), so it
// counts writes and injects failures without reaching into the sink.
type Commands struct {
	dir string
}

// NewCommands keeps its scripts and log in a temporary directory.
func NewCommands(t testing.TB) *Commands {
	return &Commands{dir: t.TempDir()}
}

// Wrap returns a command line that logs the call as name and runs real.
func (c *Commands) Wrap(t testing.TB, name string, real ...string) string {
	t.Helper()
	quoted := make([]string, len(real))
	for i, r := range real {
		quoted[i] = "'" + strings.ReplaceAll(r, "'", `'\''`) + "'"
	}
	fail := filepath.Join(c.dir, "fail."+name)
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s\n' "%[1]s $*" >> '%[2]s/log'
f='%[3]s'
if [ -f "$f" ]; then
	read -r n pat < "$f"
	case " $* " in
	*"$pat"*)
		if [ "$n" -le 0 ]; then
			rm -f "$f"
			echo "%[1]s: injected failure (sinktest)" >&2
			exit 1
		fi
		echo "$((n-1)) $pat" > "$f";;
	esac
fi
exec %[4]s "$@"
`, name, c.dir, fail, strings.Join(quoted, " "))
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// FailOnce makes a call of name fail: calls whose arguments contain
// match (" -f " matches the word -f) are counted, skip of them pass, and
// the next fails.
func (c *Commands) FailOnce(t testing.TB, name string, skip int, match string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, "fail."+name), fmt.Appendf(nil, "%d %s\n", skip, match), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Calls returns every logged call as its name followed by its arguments.
func (c *Commands) Calls(t testing.TB) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.dir, "log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" {
			out = append(out, strings.Fields(l))
		}
	}
	return out
}

// Count is how many logged calls match.
func (c *Commands) Count(t testing.TB, match func(call []string) bool) int {
	t.Helper()
	n := 0
	for _, call := range c.Calls(t) {
		if match(call) {
			n++
		}
	}
	return n
}

// WatchFiles returns a counter of replacements of the given files: each
// call counts the files whose inode, size or times changed since the last.
func WatchFiles(paths ...string) func() int {
	last := map[string]string{}
	n := 0
	return func() int {
		for _, p := range paths {
			var sig string
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err == nil {
				sig = fmt.Sprintf("%d %d %d.%d %d.%d", st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
			}
			if sig != last[p] {
				n++
				last[p] = sig
			}
		}
		return n
	}
}
