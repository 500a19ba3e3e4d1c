package testutil

import (
	"os"
	"path/filepath"
	"strings"
)

// LiveInGroups lists the live (not zombie) processes whose process group
// is one of groups, each as "pid (comm)", from /proc.
func LiveInGroups(groups ...string) []string {
	want := map[string]bool{}
	for _, g := range groups {
		want[g] = true
	}
	var out []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 3 && f[0] != "Z" && want[f[2]] {
			out = append(out, strings.TrimSpace(s[:i+1]))
		}
	}
	return out
}
