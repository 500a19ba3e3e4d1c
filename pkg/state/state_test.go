package state

import (
	"errors"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func seen(ttl time.Duration, ps ...string) []Seen {
	out := make([]Seen, len(ps))
	for i, p := range ps {
		out[i] = Seen{Prefix: netip.MustParsePrefix(p), TTL: ttl}
	}
	return out
}

func prefixes(ps ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

var cmpOpts = []cmp.Option{cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()}

// A subset answer keeps the missing address until max(TTL, grace) passes.
func TestRetentionOverSimulatedTime(t *testing.T) {
	const grace = time.Hour
	f := New()
	all := seen(30*time.Second, "193.0.2.1/32", "193.0.2.2/32", "193.0.2.3/32")
	if got := f.Observe("events", all, nil, t0, Window{Grace: grace}); len(got) != 0 {
		t.Fatalf("first run retained %v", got)
	}
	steps := []struct {
		after time.Duration
		seen  []Seen
		want  []netip.Prefix
	}{
		{time.Minute, seen(30*time.Second, "193.0.2.1/32"), prefixes("193.0.2.2/32", "193.0.2.3/32")},
		{59 * time.Minute, seen(30*time.Second, "193.0.2.1/32", "193.0.2.2/32"), prefixes("193.0.2.3/32")},
		// 193.0.2.3 was last seen at t0: an hour later it goes.
		{60 * time.Minute, seen(30*time.Second, "193.0.2.1/32"), prefixes("193.0.2.2/32")},
		{119 * time.Minute, seen(30*time.Second, "193.0.2.1/32"), nil},
	}
	for i, st := range steps {
		got := f.Observe("events", st.seen, nil, t0.Add(st.after), Window{Grace: grace})
		if diff := cmp.Diff(st.want, got, cmpOpts...); diff != "" {
			t.Errorf("step %d (+%s) retained (-want +got):\n%s", i, st.after, diff)
		}
	}
	if first := f.Sets["events"].Addresses()[0]; !first.FirstSeen.Equal(t0) {
		t.Errorf("first_seen = %s, want %s", first.FirstSeen, t0)
	}
}

// A long TTL outlasts the grace period.
func TestRetentionHonoursLongTTL(t *testing.T) {
	f := New()
	f.Observe("api", append(seen(3*time.Hour, "198.52.100.1/32"), seen(time.Second, "198.52.100.1/32", "198.52.100.2/32")...), nil, t0, Window{Grace: time.Hour})
	got := f.Observe("api", seen(0, "198.52.100.2/32"), nil, t0.Add(2*time.Hour), Window{Grace: time.Hour})
	if diff := cmp.Diff(prefixes("198.52.100.1/32"), got, cmpOpts...); diff != "" {
		t.Errorf("retained (-want +got):\n%s", diff)
	}
	if got := f.Observe("api", seen(0, "198.52.100.2/32"), nil, t0.Add(3*time.Hour), Window{Grace: time.Hour}); len(got) != 0 {
		t.Errorf("kept past its TTL: %v", got)
	}
}

func TestStaleSince(t *testing.T) {
	f := New()
	f.Observe("webhooks", seen(0, "193.0.2.1/32"), nil, t0, Window{Grace: time.Hour})
	if got := f.MarkStale("webhooks", t0.Add(time.Minute)); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("stale since %s", got)
	}
	if got := f.MarkStale("webhooks", t0.Add(2*time.Minute)); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("second failure moved stale_since to %s", got)
	}
	f.Observe("webhooks", seen(0, "193.0.2.1/32"), nil, t0.Add(3*time.Minute), Window{Grace: time.Hour})
	if !f.Sets["webhooks"].StaleSince.IsZero() {
		t.Error("success did not clear stale_since")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", FileName)
	f := New()
	f.Observe("events", seen(30*time.Second, "2001:db9::1/128", "193.0.2.1/32"), nil, t0, Window{Grace: time.Hour})
	f.MarkStale("api", t0)
	f.OpenAlerts = []string{"source_failed"}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, got, roundTripOpts...); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

var roundTripOpts = append([]cmp.Option{
	cmpopts.SortSlices(func(a, b Address) bool { return plan.ComparePrefix(a.Prefix, b.Prefix) < 0 }),
	cmp.Transformer("memory", func(s *Set) setView {
		if s == nil {
			return setView{}
		}
		return setView{s.Addresses(), s.LastSuccess, s.StaleSince}
	}),
}, cmpOpts...)

// setView is a Set as its addresses, for cmp.
type setView struct {
	Addresses               []Address
	LastSuccess, StaleSince time.Time
}

// Format 1 files still load, and the next save writes format 2.
func TestLoadFormat1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	v1 := `{
  "format_version": 1,
  "sets": {
    "events": {
      "addresses": [
        {"prefix": "193.0.2.1/32", "first_seen": "2026-11-22T11:00:00Z", "last_seen": "2026-11-22T12:00:00Z", "ttl_seconds": 30},
        {"prefix": "203.1.113.0/24", "first_seen": "2026-11-22T11:00:00Z", "last_seen": "2026-11-22T11:30:00Z"}
      ],
      "last_success": "2026-11-22T12:00:00Z"
    },
    "api": {"addresses": [], "stale_since": "2026-11-22T11:00:00Z"}
  },
  "open_alerts": ["source_failed"]
}
`
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &File{FormatVersion: FormatVersion, OpenAlerts: []string{"source_failed"}, Sets: map[string]*Set{
		"events": NewSet([]Address{
			{Prefix: netip.MustParsePrefix("193.0.2.1/32"), FirstSeen: t0.Add(-time.Hour), LastSeen: t0, TTLSeconds: 30},
			{Prefix: netip.MustParsePrefix("203.1.113.0/24"), FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-30 * time.Minute)},
		}, t0, time.Time{}),
		"api": {StaleSince: t0.Add(-time.Hour)},
	}}
	if diff := cmp.Diff(want, f, roundTripOpts...); diff != "" {
		t.Fatalf("format 1 (-want +got):\n%s", diff)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"format_version": 2`) {
		t.Errorf("saved as:\n%s", data)
	}
	again, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again, roundTripOpts...); diff != "" {
		t.Errorf("format 2 round trip (-want +got):\n%s", diff)
	}
}

// Issue 15: a run that sees what the last one saw does not rewrite the
// state file (bytes and mtime), even as a cache counts the TTL down, and
// retention still counts from the last run that saw an address.
func TestSaveUnchangedKeepsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	w := Window{Grace: time.Hour}
	f := New()
	f.Observe("events", seen(30*time.Second, "193.0.2.1/32", "193.0.2.3/32"), nil, t0, w)
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Observe("events", seen(25*time.Second, "193.0.2.1/32", "193.0.2.3/32"), nil, t0.Add(5*time.Minute+300*time.Millisecond), w)
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Errorf("rewritten:\n%s\nwas:\n%s", after, before)
	}
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("mtime changed: %v %v", fi.ModTime(), err)
	}
	// 193.0.2.3 was last seen at +5m (rounded up to the second).
	f, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Observe("events", seen(30*time.Second, "193.0.2.1/32"), nil, t0.Add(65*time.Minute), w); len(got) != 1 {
		t.Errorf("at +65m retained %v, want 193.0.2.3", got)
	}
	if got := f.Observe("events", seen(30*time.Second, "193.0.2.1/32"), nil, t0.Add(65*time.Minute+time.Second), w); len(got) != 0 {
		t.Errorf("at +65m1s retained %v", got)
	}
}

// Without the clock file the last answer's addresses are taken as seen
// now: a partial cold start, never an early removal.
func TestLostClockTakesNow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	w := Window{Grace: time.Hour}
	f := New()
	f.Observe("events", seen(0, "193.0.2.1/32", "193.0.2.3/32"), nil, t0, w)
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	for name, clock := range map[string]*string{"missing": nil, "corrupt": ptr("{not json")} {
		t.Run(name, func(t *testing.T) {
			cp := filepath.Join(dir, ClockFileName)
			os.Remove(cp)
			if clock != nil {
				if err := os.WriteFile(cp, []byte(*clock), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			now := t0.Add(3 * time.Hour)
			got := f.Observe("events", seen(0, "193.0.2.1/32"), nil, now, w)
			if diff := cmp.Diff(prefixes("193.0.2.3/32"), got, cmpOpts...); diff != "" {
				t.Errorf("retained (-want +got):\n%s", diff)
			}
			if got := f.Observe("events", seen(0, "193.0.2.1/32"), nil, now.Add(time.Hour), w); len(got) != 0 {
				t.Errorf("one window later retained %v", got)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMissingFileIsEmpty(t *testing.T) {
	f, err := Load(filepath.Join(t.TempDir(), FileName))
	if err != nil || len(f.Sets) != 0 {
		t.Fatalf("Load = %+v, %v", f, err)
	}
}

// A corrupt file is set aside, never a crash.
func TestCorruptFileIsSetAside(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":     `{"format_version":1,"sets":{"events":{"addresses":[{"prefix":"192.0.2`,
		"wrong version": `{"format_version":7,"sets":{}}`,
		"bad prefix":    `{"format_version":1,"sets":{"events":{"addresses":[{"prefix":"nonsense"}]}}}`,
		"null set":      `{"format_version":1,"sets":{"events":null}}`,
		"binary":        "\x00\x01\x02",
		"v2 host bits":  `{"format_version":2,"sets":{"events":{"groups":[{"first":1,"prefixes":"193.0.2.1/24"}]}}}`,
		"v2 zone":       `{"format_version":2,"sets":{"events":{"groups":[{"first":1,"prefixes":"fe80::1%eth0"}]}}}`,
		"v2 bad time":   `{"format_version":2,"sets":{"events":{"groups":[{"first":-1,"prefixes":"193.0.2.1"}]}}}`,
		"v2 bad ttl":    `{"format_version":2,"sets":{"events":{"groups":[{"first":1,"ttl":-1,"prefixes":"193.0.2.1"}]}}}`,
		"v2 unknown":    `{"format_version":2,"sets":{"events":{"groupz":[]}}}`,
		"v2 trailing":   `{"format_version":2,"sets":{}} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Load(path)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Load error = %v, want CorruptError", err)
			}
			if f == nil || len(f.Sets) != 0 {
				t.Fatalf("state = %+v, want empty", f)
			}
			if data, _ := os.ReadFile(path); string(data) != content {
				t.Fatal("Load alone changed the file")
			}
			if err := ce.SetAside(t0); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "moved it to") {
				t.Errorf("message %q", err)
			}
			aside, _ := os.ReadFile(ce.MovedTo)
			if string(aside) != content {
				t.Error("corrupt content not preserved aside")
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Error("corrupt file still in place")
			}
		})
	}
}

func TestDefaultDir(t *testing.T) {
	env := map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": ""}
	getenv := func(k string) string { return env[k] }
	if got := DefaultDir(0, getenv); got != "/var/lib/pdsafelist" {
		t.Errorf("root: %s", got)
	}
	if got := DefaultDir(1000, getenv); got != "/home/u/.local/state/pdsafelist" {
		t.Errorf("user: %s", got)
	}
	env["XDG_STATE_HOME"] = "/x"
	if got := DefaultDir(1000, getenv); got != "/x/pdsafelist" {
		t.Errorf("xdg: %s", got)
	}
}

func TestWindowKeep(t *testing.T) {
	w := Window{Grace: time.Hour}
	for _, tt := range []struct {
		ttl  int64
		want time.Duration
	}{
		{0, time.Hour},
		{-5, time.Hour},
		{7200, 2 * time.Hour},
		{2147483647, DefaultMaxTTL},
		{1 << 62, DefaultMaxTTL}, // would overflow a Duration
	} {
		if got := w.keep(tt.ttl); got != tt.want {
			t.Errorf("keep(%d) = %s, want %s", tt.ttl, got, tt.want)
		}
	}
	if got := (Window{Grace: time.Hour, MaxTTL: 3 * time.Hour}).keep(1 << 40); got != 3*time.Hour {
		t.Errorf("capped at 3h: %s", got)
	}
}

// A set with no history takes what the sinks hold as seen now; a set with
// history does not.
func TestObserveColdStart(t *testing.T) {
	f := New()
	held := prefixes("193.0.2.1/32", "193.0.2.9/32")
	held = append(held, netip.Prefix{})
	got := f.Observe("events", seen(0, "193.0.2.1/32"), held, t0, Window{Grace: time.Hour})
	if diff := cmp.Diff(prefixes("193.0.2.9/32"), got, cmpOpts...); diff != "" {
		t.Errorf("retained (-want +got):\n%s", diff)
	}
	got = f.Observe("events", seen(0, "193.0.2.1/32"), prefixes("193.0.2.7/32"), t0.Add(time.Minute), Window{Grace: time.Hour})
	if diff := cmp.Diff(prefixes("193.0.2.9/32"), got, cmpOpts...); diff != "" {
		t.Errorf("with history, retained (-want +got):\n%s", diff)
	}
}

func TestKnownMeasuredAtStaleSince(t *testing.T) {
	f := New()
	w := Window{Grace: time.Hour}
	f.Observe("events", seen(0, "193.0.2.1/32", "193.0.2.3/32"), nil, t0, w)
	f.Observe("events", seen(0, "193.0.2.3/32"), nil, t0.Add(30*time.Minute), w)
	if got := f.Known("events", t0.Add(59*time.Minute), w); len(got) != 2 {
		t.Errorf("known before freeze: %v", got)
	}
	f.MarkStale("events", t0.Add(40*time.Minute))
	got := f.Known("events", t0.Add(10*time.Hour), w)
	if diff := cmp.Diff(prefixes("193.0.2.1/32", "193.0.2.3/32"), got, cmpOpts...); diff != "" {
		t.Errorf("known while frozen (-want +got):\n%s", diff)
	}
	if got := f.Known("api", t0, w); got != nil {
		t.Errorf("unknown set: %v", got)
	}
}
