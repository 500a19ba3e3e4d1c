package nftables

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	gnft "github.com/google/nftables"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

const noForeign = "the sink owns one whole table; nothing outside it is read, so no entry is foreign"

// The file sink: nft is a logging stand-in that checks nothing, so the
// host's ruleset is never consulted.
func TestConformanceFile(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		Type: "nftables",
		New:  func(t testing.TB) *sinktest.Target { return nftTarget(t, false) },
		Skip: map[sinktest.Case]string{sinktest.ForeignCovering: noForeign},
	})
}

// apply=true in a network namespace: the loaded table is the live state.
func TestConformanceApply(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	sinktest.Run(t, sinktest.Harness{
		Type:     "nftables",
		New:      func(t testing.TB) *sinktest.Target { return nftTarget(t, true) },
		Parallel: true,
		Skip:     map[sinktest.Case]string{sinktest.ForeignCovering: noForeign},
	})
}

var nftSetRE = regexp.MustCompile(`\b[a-z][a-z0-9_]*_(tcp|udp)[0-9]+_`)

var setDeclRE = regexp.MustCompile(`(?m)^\s*set (\S+) \{`)

func nftTarget(t testing.TB, live bool) *sinktest.Target {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pdsafelist.nft")
	cmds := sinktest.NewCommands(t)
	real := []string{"true"}
	var pair *netns.Pair
	ns := ""
	if live {
		pair = netns.New(t)
		real, ns = []string{"nft"}, pair.Server
	}
	o := Options{Path: path, Table: "pdsafelist", Enforce: "ingress", Check: "always", Apply: live, Nft: cmds.Wrap(t, "nft", real...), Netns: ns}
	hostile := func(set func(o *Options, v string)) func(testing.TB, string) (sink.Sink, error) {
		return func(_ testing.TB, v string) (sink.Sink, error) {
			h := o
			set(&h, v)
			return New(h, "sinktest")
		}
	}
	// batches counts element batches sent; failNext makes the next load,
	// a batch or nft -f, fail.
	var batches int
	failNext := false
	openWith := func(t testing.TB, o Options) sink.Sink {
		t.Helper()
		s, err := New(o, "sinktest")
		if err != nil {
			t.Fatal(err)
		}
		s.beforeFlush = func(c *gnft.Conn, _ *gnft.Table) {
			batches++
			if failNext {
				// A real kernel refusal: deleting a table that is not
				// there aborts the whole batch.
				failNext = false
				c.DelTable(&gnft.Table{Name: "pdsafelist_absent", Family: gnft.TableFamilyINet})
			}
		}
		run := s.run
		s.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
			if failNext && slices.Contains(argv, "-f") && !slices.Contains(argv, "-c") {
				failNext = false
				return []byte("Error: injected load failure (sinktest)"), errors.New("exit status 1")
			}
			return run(ctx, argv, stdin)
		}
		return s
	}
	open := func(t testing.TB) sink.Sink { return openWith(t, o) }
	files := sinktest.WatchFiles(path)
	read := func(t testing.TB) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return string(data)
	}
	nft := func(t testing.TB, args ...string) string {
		t.Helper()
		out, err := pair.Exec(pair.Server, append([]string{"nft"}, args...)...)
		if err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	write := func(t testing.TB, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tg := &sinktest.Target{
		Open: open,
		Writes: func(t testing.TB) int {
			loads := cmds.Count(t, func(c []string) bool { return len(c) > 1 && c[1] == "-f" })
			if live {
				crossCheck(t, pair.Server, "pdsafelist")
			}
			return files() + loads + batches
		},
		Snapshot: func(t testing.TB) string {
			s := "file:\n" + read(t)
			if live {
				crossCheck(t, pair.Server, "pdsafelist")
				s += "kernel:\n" + nft(t, "list", "ruleset")
			}
			return s
		},
		// Written as the sink would write it, without a plan.
		InjectOwned: func(t testing.TB, e plan.Entry) {
			t.Helper()
			s := open(t)
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(context.Background(), plan.SinkPlan{Sink: s.Name(), Keep: append(st.Owned, e)}); err != nil {
				t.Fatal(err)
			}
		},
		FailNext: func(t testing.TB) {
			if live {
				// The check passes, the file is renamed into place, then
				// loading it (a batch or nft -f) fails.
				failNext = true
				return
			}
			cmds.FailOnce(t, "nft", 0, " -c ")
		},
		Tamper: map[string]func(testing.TB){
			"hand-written": func(t testing.TB) {
				write(t, "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n")
			},
			"other-table": func(t testing.TB) {
				r := strings.NewReplacer("inet pdsafelist", "inet other", "inet:pdsafelist", "inet:other")
				write(t, r.Replace(read(t)))
			},
			// A foreign ruleset with our file appended: the marker is in
			// the middle, not in the header we write.
			"concatenated": func(t testing.TB) {
				write(t, "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n"+read(t))
			},
		},
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"path": hostile(func(o *Options, v string) { o.Path = filepath.Join(filepath.Dir(path), v) }),
			"nft":  hostile(func(o *Options, v string) { o.Nft += " " + v }),
		},
		OpenIn: func(t testing.TB, dir string) sink.Sink {
			h := o
			h.Path = filepath.Join(dir, "pdsafelist.nft")
			return openWith(t, h)
		},
	}
	// Every set's name edited by hand into one that names no set, its
	// rules with it (issue 20 item 3).
	tg.Unlabel = func(t testing.TB) {
		data := read(t)
		edited := nftSetRE.ReplaceAllStringFunc(data, func(m string) string { return strings.ToUpper(m[:1]) + m[1:] })
		if edited == data {
			t.Fatal("no set name to edit")
		}
		write(t, edited)
	}
	if live {
		tg.Drift = func(t testing.TB) {
			m := setDeclRE.FindStringSubmatch(nft(t, "list", "table", "inet", "pdsafelist"))
			if m == nil {
				t.Fatal("no set in table inet pdsafelist")
			}
			nft(t, "flush", "set", "inet", "pdsafelist", m[1])
		}
	} else {
		tg.Drift = func(t testing.TB) {
			data := read(t)
			edited := strings.Replace(data, "\t\tflags interval\n", "\t\tflags interval\n\t\tcounter\n", 1)
			if edited == data {
				t.Fatal("no set to edit in the file")
			}
			write(t, edited)
		}
	}
	return tg
}
