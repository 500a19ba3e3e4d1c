package template

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
)

func entries() []plan.Entry {
	e := func(set, p string, dir plan.Direction, port uint16) plan.Entry {
		return plan.Entry{Set: set, Prefix: netip.MustParsePrefix(p), Direction: dir, Protocol: plan.TCP, Port: port}
	}
	return plan.Sort([]plan.Entry{
		e("webhooks", "44.242.69.192/32", plan.Ingress, 443),
		e("webhooks", "44.242.69.193/32", plan.Ingress, 443),
		e("webhooks", "2600:1f14:d0c:9d00::a1/128", plan.Ingress, 443),
		e("api", "54.203.252.221/32", plan.Egress, 443),
		e("events", "54.203.252.221/32", plan.Egress, 443),
	})
}

func newSink(t *testing.T, o Options) *Sink {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "allow.conf")
	}
	s, err := New(o, "", "--sink template")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, s *Sink, es []plan.Entry) {
	t.Helper()
	if err := s.Apply(context.Background(), plan.SinkPlan{Sink: s.Name(), Add: es}); err != nil {
		t.Fatal(err)
	}
}

// Every built-in format renders as in its golden file and reads back the
// exact entries it was given, with no drift.
func TestFormatsRenderAndReadBack(t *testing.T) {
	for _, f := range formatNames() {
		t.Run(f, func(t *testing.T) {
			o := Options{Format: f}
			if f == "k8s-networkpolicy" {
				o.Namespace, o.PodSelector = "webhooks", "app=receiver"
			}
			s := newSink(t, o)
			apply(t, s, entries())
			data, err := os.ReadFile(s.opts.Path)
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, f+".golden", data)
			st, err := s.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(entries(), st.Owned, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" || len(st.Drift) > 0 {
				t.Errorf("read back (-want +got):\n%s\ndrift %v", diff, st.Drift)
			}
		})
	}
}

// A user template renders the body; the manifest is still written and read
// in the comment syntax the user names.
func TestCustomTemplate(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "caddy.tmpl")
	if err := os.WriteFile(tmpl, []byte("@pagerduty remote_ip {{join \" \" .IPv4}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Options{Template: tmpl, Comment: "//"})
	apply(t, s, entries())
	data, _ := os.ReadFile(s.opts.Path)
	if !strings.HasPrefix(string(data), "// "+headerText+"\n") || !strings.HasSuffix(string(data), "@pagerduty remote_ip 44.242.69.192/31 54.203.252.221/32\n") {
		t.Errorf("rendered:\n%s", data)
	}
	st, err := s.Current(context.Background())
	if err != nil || len(st.Owned) != len(entries()) || len(st.Drift) > 0 {
		t.Errorf("read back %d entries, drift %v, err %v", len(st.Owned), st.Drift, err)
	}
}

// A file pdsafelist did not write is never overwritten, even when our
// header line appears somewhere inside it (a concatenated file).
func TestForeignFileRefusedUntouched(t *testing.T) {
	for name, content := range map[string]string{
		"nginx config":     "allow 10.0.0.0/8;\ndeny all;\n",
		"marker in middle": "server { listen 80; }\n# " + headerText + "\n# pdsafelist:owner -\n# pdsafelist:end\n",
		"other owner":      "# " + headerText + "\n# pdsafelist:owner prod\n# pdsafelist:end\n",
		"bad entry":        "# " + headerText + "\n# pdsafelist:owner -\n# pdsafelist:entry webhooks ingress tcp 443 44.242.69.192/24\n# pdsafelist:end\n",
		"no end":           "# " + headerText + "\n# pdsafelist:owner -\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := newSink(t, Options{Format: "nginx"})
			if err := os.WriteFile(s.opts.Path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.Current(context.Background())
			if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Current err = %v, want a one-line refusal", err)
			}
			if data, _ := os.ReadFile(s.opts.Path); string(data) != content {
				t.Errorf("file changed")
			}
		})
	}
}

// A hand edit of the body is drift: the next sync rewrites the file.
func TestHandEditIsDrift(t *testing.T) {
	s := newSink(t, Options{Format: "nginx"})
	apply(t, s, entries())
	f, err := os.OpenFile(s.opts.Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("allow 0.0.0.0/0;\n")
	f.Close()
	st, err := s.Current(context.Background())
	if err != nil || len(st.Drift) != 1 {
		t.Fatalf("drift %v err %v", st.Drift, err)
	}
	apply(t, s, nil)
	if st, _ := s.Current(context.Background()); len(st.Drift) != 0 {
		t.Errorf("drift after rewrite: %v", st.Drift)
	}
}

// A failing check leaves the old file and never reloads, in both check
// modes: on the new file's path ({}), and in place then put back.
func TestFailingCheckKeepsOldFileAndSkipsReload(t *testing.T) {
	for _, check := range []string{"check {}", "check"} {
		t.Run(check, func(t *testing.T) {
			s := newSink(t, Options{Format: "nginx", Check: strings.Fields(check), Reload: sink.Command{"reload"}})
			var calls []string
			fail := false
			s.run = func(_ context.Context, argv []string) ([]byte, error) {
				calls = append(calls, strings.Join(argv, " "))
				if argv[0] == "check" && fail {
					return nil, errors.New("check: nginx: [emerg] unexpected end of file")
				}
				return nil, nil
			}
			apply(t, s, entries()[:1])
			old, _ := os.ReadFile(s.opts.Path)
			calls, fail = nil, true
			err := s.Apply(context.Background(), plan.SinkPlan{Add: entries()})
			if err == nil || !strings.Contains(err.Error(), "unexpected end of file") {
				t.Fatalf("err = %v", err)
			}
			if now, _ := os.ReadFile(s.opts.Path); string(now) != string(old) {
				t.Errorf("old file not kept:\n%s", now)
			}
			if len(calls) != 1 || !strings.HasPrefix(calls[0], "check") {
				t.Errorf("calls %v, want only the check", calls)
			}
			if check == "check {}" && calls[0] == "check "+s.opts.Path {
				t.Errorf("the check ran on the live path, want the new file")
			}
		})
	}
}

// A failed reload puts the old file back, so the file matches what the
// service runs and the next sync tries again.
func TestFailingReloadRestoresOldFile(t *testing.T) {
	s := newSink(t, Options{Format: "plain", Reload: sink.Command{"reload", "{}"}})
	fail := false
	s.run = func(_ context.Context, argv []string) ([]byte, error) {
		if fail {
			return nil, errors.New("exit status 1")
		}
		return nil, nil
	}
	apply(t, s, entries()[:1])
	old, _ := os.ReadFile(s.opts.Path)
	fail = true
	if err := s.Apply(context.Background(), plan.SinkPlan{Add: entries()}); err == nil || !strings.Contains(err.Error(), "next run retries") {
		t.Fatalf("err = %v", err)
	}
	if now, _ := os.ReadFile(s.opts.Path); string(now) != string(old) {
		t.Errorf("old file not restored")
	}
}

// A hung reload is stopped at the run's deadline (procrun kills its whole
// group), and the old file comes back.
func TestHungReloadStoppedAtDeadline(t *testing.T) {
	script := filepath.Join(t.TempDir(), "hang.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 30 &\nwait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Options{Format: "plain", Reload: sink.Command{script}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := s.Apply(ctx, plan.SinkPlan{Add: entries()})
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(s.opts.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the new file stayed after a failed reload (stat: %v)", err)
	}
}

func TestOptionsRefused(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "t")
	_ = os.WriteFile(tmpl, []byte("{{.Nope"), 0o644)
	for name, o := range map[string]Options{
		"unknown format":     {Format: "caddy"},
		"format and file":    {Format: "nginx", Template: tmpl},
		"bad template":       {Template: tmpl},
		"missing template":   {Template: tmpl + "x"},
		"comment on builtin": {Format: "nginx", Comment: "//"},
		"k8s opts elsewhere": {Format: "nginx", Namespace: "x"},
		"bad selector":       {Format: "k8s-networkpolicy", PodSelector: "app"},
		"bad name":           {Format: "k8s-networkpolicy", Name: "Not_A_Label"},
	} {
		o.Path = filepath.Join(t.TempDir(), "f")
		if _, err := New(o, "", "--sink template:f"); err == nil || !strings.HasPrefix(err.Error(), "--sink template:f: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want a one-line error naming the sink", name, err)
		}
	}
}
