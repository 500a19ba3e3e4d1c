package template

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

// The template sink in each built-in format that takes any direction (the
// suite's sets are egress; nginx and haproxy lists refuse them, and share
// the plain format's manifest code); check and reload are logging
// stand-ins, so a failed reload (which puts the old file back) is the
// failure part way.
func TestConformance(t *testing.T) {
	for _, f := range []string{"plain", "json", "k8s-networkpolicy"} {
		t.Run(f, func(t *testing.T) {
			skip := map[sinktest.Case]string{
				sinktest.ForeignCovering: "the file holds only what pdsafelist rendered; nothing in it is foreign",
			}
			sinktest.Run(t, sinktest.Harness{
				Type: "template",
				New:  func(t testing.TB) *sinktest.Target { return templateTarget(t, f) },
				Skip: skip,
			})
		})
	}
}

var (
	unlabelRE = regexp.MustCompile(`(pdsafelist:entry )[a-z][a-z0-9_]*`)
	jsonSetRE = regexp.MustCompile(`"set": "[a-z][a-z0-9_]*"`)
)

func templateTarget(t testing.TB, format string) *sinktest.Target {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "allow.conf")
	cmds := sinktest.NewCommands(t)
	o := Options{Path: path, Format: format, Check: sink.Command{cmds.Wrap(t, "check", "true")}, Reload: sink.Command{cmds.Wrap(t, "reload", "true")}}
	openWith := func(t testing.TB, o Options) sink.Sink {
		t.Helper()
		s, err := New(o, "", "sinktest")
		if err != nil {
			t.Fatal(err)
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
	write := func(t testing.TB, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	comment := "#"
	if format == "json" {
		comment = ""
	}
	return &sinktest.Target{
		Open:     open,
		Writes:   func(t testing.TB) int { return files() },
		Snapshot: func(t testing.TB) string { return read(t) },
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
		Drift: func(t testing.TB) {
			data := read(t)
			if comment == "" {
				write(t, strings.Replace(data, `"prefixes": [`, `"prefixes": [ "0.0.0.0/0",`, 1))
				return
			}
			write(t, data+"0.0.0.0/0\n")
		},
		FailNext: func(t testing.TB) { cmds.FailOnce(t, "reload", 0, "") },
		// Every manifest label edited by hand into something that is no
		// set name (issue 20 item 3).
		Unlabel: func(t testing.TB) {
			t.Helper()
			data := read(t)
			edited := unlabelRE.ReplaceAllString(data, "${1}Hand-Edited")
			if comment == "" {
				edited = jsonSetRE.ReplaceAllString(data, `"set": "Hand Edited"`)
			}
			if edited == data {
				t.Fatal("no manifest label to edit")
			}
			write(t, edited)
		},
		Hostile: map[string]func(testing.TB, string) (sink.Sink, error){
			"owner_id": func(_ testing.TB, v string) (sink.Sink, error) { return New(o, v, "sinktest") },
			"path": func(_ testing.TB, v string) (sink.Sink, error) {
				h := o
				h.Path = filepath.Join(dir, v)
				return New(h, "", "sinktest")
			},
		},
		Tamper: map[string]func(testing.TB){
			"hand-written": func(t testing.TB) { write(t, "allow 10.0.0.0/8;\ndeny all;\n") },
			// A foreign file with ours appended: our header is not its
			// first line.
			"concatenated": func(t testing.TB) { write(t, "server { listen 80; }\n"+read(t)) },
			"other-owner": func(t testing.TB) {
				data := read(t)
				if comment == "" {
					write(t, strings.Replace(data, `"generated_by": "pdsafelist",`, `"generated_by": "pdsafelist", "owner": "prod",`, 1))
					return
				}
				write(t, strings.Replace(data, "# "+ownerTag+"-", "# "+ownerTag+"prod", 1))
			},
		},
		OpenIn: func(t testing.TB, dir string) sink.Sink {
			h := o
			h.Path = filepath.Join(dir, "allow.conf")
			return openWith(t, h)
		},
	}
}
