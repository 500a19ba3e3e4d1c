package check

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// The most common silent failure: `iptables` on one backend while the
// kernel's rules are in the other. Each case is what the three programs
// answer on such a host.
func TestIptablesBackendMismatch(t *testing.T) {
	save := func(n int) string {
		return "*filter\n:INPUT ACCEPT [0:0]\n" + strings.Repeat("-A INPUT -j ACCEPT\n", n) + "COMMIT\n"
	}
	for _, c := range []struct {
		name, version string
		legacy, nft   string // "" : not installed
		ok            bool
		want          string
	}{
		{"legacy tool, rules in nf_tables", "iptables v1.8.9 (legacy)", save(0), save(12), false,
			"iptables uses legacy, but the kernel's 12 iptables rules are in nf_tables"},
		{"nft tool, rules in legacy", "iptables v1.8.9 (nf_tables)", save(5), save(0), false,
			"iptables uses nf_tables, but the kernel's 5 iptables rules are in legacy"},
		{"nft tool, rules in nf_tables", "iptables v1.8.9 (nf_tables)", save(0), save(3), true, "backend nf_tables, 3 rules there"},
		{"both in use", "iptables v1.8.9 (nf_tables)", save(2), save(3), true, "2 more rules in legacy (both backends in use)"},
		{"legacy only installed", "iptables v1.6.1", save(4), "", true, "backend legacy, 4 rules there"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := &Options{Run: func(_ context.Context, argv []string) ([]byte, error) {
				switch strings.Join(argv, " ") {
				case "iptables --version":
					return []byte(c.version + "\n"), nil
				case "iptables-legacy-save":
					if c.legacy != "" {
						return []byte(c.legacy), nil
					}
				case "iptables-nft-save":
					if c.nft != "" {
						return []byte(c.nft), nil
					}
				}
				return nil, errors.New(argv[0] + ": not found")
			}}
			var out bytes.Buffer
			r := &report{w: &out}
			opts.iptablesBackend(context.Background(), r)
			if (r.failed == 0) != c.ok || !strings.Contains(out.String(), c.want) {
				t.Errorf("got %q (failed %d), want ok=%v and %q", out.String(), r.failed, c.ok, c.want)
			}
		})
	}
}
