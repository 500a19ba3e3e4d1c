package iptables

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

var liveSkips = map[sinktest.Case]string{
	sinktest.ForeignCovering: "the live sink reads only its own chains: a rule elsewhere may sit after our enforce drop, so it covers nothing, and a rule inside our chains is drift",
	sinktest.ForeignTarget:   "the live sink owns two chains by name in a shared kernel; there is no header to be foreign, and a rule someone else puts in our chains is drift (hand-drift case)",
	sinktest.FileDirectory:   "the live sink writes the kernel, not files",
}

// The live sink in a namespace, on the nf_tables backend.
func TestConformanceLive(t *testing.T) {
	integration(t)
	sinktest.Run(t, sinktest.Harness{Type: "iptables", Parallel: true, Skip: liveSkips,
		New: func(t testing.TB) *sinktest.Target { return liveTarget(t, "", 200, "command") }})
}

// The same with every group of two or more prefixes in an ipset.
func TestConformanceLiveIPSet(t *testing.T) {
	integration(t)
	sinktest.Run(t, sinktest.Harness{Type: "iptables", Parallel: true, Skip: liveSkips,
		New: func(t testing.TB) *sinktest.Target { return liveTarget(t, "", 1, "command") }})
}

// The same with the ipsets read and changed through netlink.
func TestConformanceLiveIPSetNetlink(t *testing.T) {
	integration(t)
	sinktest.Run(t, sinktest.Harness{Type: "iptables", Parallel: true, Skip: liveSkips,
		New: func(t testing.TB) *sinktest.Target { return liveTarget(t, "", 1, "netlink") }})
}

// The same on the legacy (x_tables) backend.
func TestConformanceLiveLegacy(t *testing.T) {
	integration(t)
	testutil.Integration(t, true, "iptables-legacy", "ip6tables-legacy", "iptables-legacy-restore", "ip6tables-legacy-restore")
	sinktest.Run(t, sinktest.Harness{Type: "iptables", Parallel: true, Skip: liveSkips,
		New: func(t testing.TB) *sinktest.Target { return liveTarget(t, "-legacy", 200, "command") }})
}

// The legacy backend with netlink ipsets.
func TestConformanceLiveLegacyIPSetNetlink(t *testing.T) {
	integration(t)
	testutil.Integration(t, true, "iptables-legacy", "ip6tables-legacy", "iptables-legacy-restore", "ip6tables-legacy-restore")
	sinktest.Run(t, sinktest.Harness{Type: "iptables", Parallel: true, Skip: liveSkips,
		New: func(t testing.TB) *sinktest.Target { return liveTarget(t, "-legacy", 1, "netlink") }})
}

// faultyKernel counts the ipset changes made through netlink, and fails
// one on request after making its first member change.
type faultyKernel struct {
	ipsetKernel
	writes *atomic.Int32
	fail   *atomic.Bool
}

func (k faultyKernel) change(ctx context.Context, name string, add, del []netip.Prefix) error {
	if len(add)+len(del) == 0 {
		return nil
	}
	k.writes.Add(1)
	if len(add)+len(del) > 1 && k.fail.Swap(false) {
		if len(add) > 0 {
			add = add[:1]
		} else {
			del = del[:1]
		}
		return errors.Join(k.ipsetKernel.change(ctx, name, add, nil), errors.New("injected netlink failure"))
	}
	return k.ipsetKernel.change(ctx, name, add, del)
}

// Staging through netlink writes too.
func (k faultyKernel) script(ctx context.Context, steps []ipsetStep) error {
	k.writes.Add(int32(len(steps)))
	return k.ipsetKernel.script(ctx, steps)
}

func (k faultyKernel) destroy(ctx context.Context, name string) error {
	k.writes.Add(1)
	return k.ipsetKernel.destroy(ctx, name)
}

// Counters, and the random hash seed of each ipset, differ between
// targets that hold the same rules.
var (
	saveNoise  = regexp.MustCompile(`\[\d+:\d+\]`)
	ipsetNoise = regexp.MustCompile(` initval 0x[0-9a-f]+`)
)

// liveTarget is a fresh namespace; suffix picks the backend ("" or
// "-legacy").
func liveTarget(t testing.TB, suffix string, threshold int, via string) *sinktest.Target {
	t.Helper()
	p := netns.New(t)
	cmds := sinktest.NewCommands(t)
	in := func(bin string) []string { return []string{"ip", "netns", "exec", p.Server, bin} }
	o := DefaultOptions()
	o.Enforce = "ingress"
	o.IPSetThreshold = threshold
	o.IPTables = cmds.Wrap(t, "iptables", in("iptables"+suffix)...)
	o.IP6Tables = cmds.Wrap(t, "ip6tables", in("ip6tables"+suffix)...)
	o.IPTablesRestore = cmds.Wrap(t, "iptables-restore", in("iptables"+suffix+"-restore")...)
	o.IP6TablesRestore = cmds.Wrap(t, "ip6tables-restore", in("ip6tables"+suffix+"-restore")...)
	o.IPSet = cmds.Wrap(t, "ipset", in("ipset")...)
	o.IPSetVia = via
	if via == "netlink" {
		o.NetNS = p.Server
	}
	var nlWrites atomic.Int32
	var nlFail atomic.Bool
	open := func(t testing.TB) sink.Sink {
		t.Helper()
		s, err := New(o, "", "sinktest")
		if err != nil {
			t.Fatal(err)
		}
		if via == "netlink" {
			s.kernel = faultyKernel{s.kernel, &nlWrites, &nlFail}
		}
		return s
	}
	run := func(t testing.TB, argv ...string) string {
		t.Helper()
		out, err := p.Exec(p.Server, argv...)
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	return &sinktest.Target{
		Open: open,
		Writes: func(t testing.TB) int {
			return int(nlWrites.Load()) + cmds.Count(t, func(c []string) bool {
				switch c[0] {
				case "iptables-restore", "ip6tables-restore":
					return !slices.Contains(c, "--test")
				case "ipset":
					return len(c) > 1 && c[1] != "list" && c[1] != "save"
				}
				return slices.ContainsFunc(c[1:], func(a string) bool {
					return slices.Contains([]string{"-A", "-I", "-D", "-R", "-F", "-N", "-X", "-P", "-Z"}, a)
				})
			})
		},
		Snapshot: func(t testing.TB) string {
			var b strings.Builder
			for _, save := range []string{"iptables" + suffix + "-save", "ip6tables" + suffix + "-save"} {
				for _, l := range strings.Split(run(t, save, "-t", "filter"), "\n") {
					if !strings.HasPrefix(l, "#") {
						b.WriteString(saveNoise.ReplaceAllString(l, "") + "\n")
					}
				}
			}
			sets := strings.Split(strings.TrimSpace(ipsetNoise.ReplaceAllString(run(t, "ipset", "save"), "")), "\n")
			slices.Sort(sets)
			b.WriteString("ipsets:\n" + strings.Join(sets, "\n") + "\n")
			return b.String()
		},
		InjectOwned: func(t testing.TB, e plan.Entry) { injectOwned(t, open(t), e) },
		Drift: func(t testing.TB) {
			run(t, "iptables"+suffix, "-F", DefaultChainIn)
		},
		// Both families pass --test, IPv4 commits, then the IPv6 commit
		// fails.
		// Through netlink, the sets change in place and no restore
		// runs: a set change fails after its first member instead.
		FailNext: func(t testing.TB) {
			if via == "netlink" {
				nlFail.Store(true)
				return
			}
			cmds.FailOnce(t, "ip6tables-restore", 1, "")
		},
		// Every set comment edited by hand, in both families.
		Unlabel: func(t testing.TB) {
			t.Helper()
			for _, bin := range []string{"iptables" + suffix, "ip6tables" + suffix} {
				saved := run(t, bin+"-save", "-t", "filter")
				path := filepath.Join(t.TempDir(), "rules")
				if err := os.WriteFile(path, []byte(unlabel(t, saved)), 0o600); err != nil {
					t.Fatal(err)
				}
				run(t, bin+"-restore", path)
			}
		},
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id": func(_ testing.TB, v string) (sink.Sink, error) { return New(o, v, "sinktest") },
			"iptables": func(_ testing.TB, v string) (sink.Sink, error) {
				h := o
				h.IPTables = v
				return New(h, "", "sinktest")
			},
		},
	}
}

var setCommentRE = regexp.MustCompile(`--comment "?pdsafelist:([a-z][a-z0-9_]*)"?`)

// unlabel edits every set's comment into one that names no set, leaving
// the enforce, self and jump comments alone.
func unlabel(t testing.TB, text string) string {
	t.Helper()
	edited := setCommentRE.ReplaceAllStringFunc(text, func(m string) string {
		set := setCommentRE.FindStringSubmatch(m)[1]
		if set == "enforce" || set == "self" || set == "jump" {
			return m
		}
		return `--comment "pdsafelist:PagerDuty ` + set + ` (edited)"`
	})
	if edited == text {
		t.Fatal("no set comment to edit")
	}
	return edited
}

// injectOwned writes e as the sink would, without a plan.
func injectOwned(t testing.TB, s sink.Sink, e plan.Entry) {
	t.Helper()
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), plan.SinkPlan{Sink: s.Name(), Keep: append(st.Owned, e)}); err != nil {
		t.Fatal(err)
	}
}

// The file sink; iptables-restore is a logging stand-in, so --test never
// reads the host's ruleset.
func TestConformanceFile(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		Type: "iptables-file",
		New:  fileTarget,
		Skip: map[sinktest.Case]string{sinktest.ForeignCovering: "the files hold only our chains and jumps; nothing in them is foreign"},
	})
}

func fileTarget(t testing.TB) *sinktest.Target {
	t.Helper()
	dir := t.TempDir()
	cmds := sinktest.NewCommands(t)
	o := DefaultFileOptions()
	o.Path = filepath.Join(dir, "rules.v4")
	o.Enforce, o.Check = "ingress", "always"
	o.IPTablesRestore = cmds.Wrap(t, "iptables-restore", "true")
	o.IP6TablesRestore = cmds.Wrap(t, "ip6tables-restore", "true")
	path6 := filepath.Join(dir, "rules.v6")
	openWith := func(t testing.TB, o FileOptions) sink.Sink {
		t.Helper()
		s, err := NewFile(o, "", "sinktest")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	open := func(t testing.TB) sink.Sink { return openWith(t, o) }
	read := func(t testing.TB, path string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return string(data)
	}
	write := func(t testing.TB, path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := sinktest.WatchFiles(o.Path, path6)
	foreign := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
	return &sinktest.Target{
		Open:   open,
		Writes: func(testing.TB) int { return files() },
		Snapshot: func(t testing.TB) string {
			return "v4:\n" + read(t, o.Path) + "v6:\n" + read(t, path6)
		},
		InjectOwned: func(t testing.TB, e plan.Entry) { injectOwned(t, open(t), e) },
		Drift: func(t testing.TB) {
			data := read(t, o.Path)
			write(t, o.Path, strings.Replace(data, "COMMIT\n", "-A "+DefaultChainIn+" -s 44.8.8.8/32 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n", 1))
		},
		Unlabel: func(t testing.TB) {
			write(t, o.Path, unlabel(t, read(t, o.Path)))
			if v6 := read(t, path6); setCommentRE.MatchString(v6) {
				write(t, path6, unlabel(t, v6))
			}
		},
		// The IPv6 file fails its check after the IPv4 one passed.
		FailNext: func(t testing.TB) { cmds.FailOnce(t, "ip6tables-restore", 0, "") },
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id": func(_ testing.TB, v string) (sink.Sink, error) { return NewFile(o, v, "sinktest") },
			"path6": func(_ testing.TB, v string) (sink.Sink, error) {
				h := o
				h.Path6 = filepath.Join(dir, v)
				return NewFile(h, "", "sinktest")
			},
		},
		Tamper: map[string]func(testing.TB){
			"hand-written": func(t testing.TB) { write(t, o.Path, foreign) },
			"other-chains": func(t testing.TB) {
				write(t, o.Path, strings.ReplaceAll(read(t, o.Path), "chains=PDSAFELIST-IN,PDSAFELIST-OUT", "chains=OTHER-IN,OTHER-OUT"))
			},
			"concatenated": func(t testing.TB) { write(t, path6, foreign+read(t, path6)) },
		},
		// Path6 is left to follow Path.
		OpenIn: func(t testing.TB, dir string) sink.Sink {
			h := o
			h.Path = filepath.Join(dir, "rules.v4")
			return openWith(t, h)
		},
	}
}
