package state

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

func TestFetchesRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), FetchFileName)
	f := NewFetches()
	rec := source.FetchRecord{ETag: `W/"abc"`, LastModified: "Thu, 26 Nov 2026 00:00:00 GMT", Token: "1764115200",
		Answer:   []netip.Prefix{netip.MustParsePrefix("2001:db9::/48"), netip.MustParsePrefix("193.0.2.1/32"), netip.MustParsePrefix("193.0.2.1/32")},
		Answered: now, Failures: 2, FailedAt: now.Add(-time.Minute)}
	f.Remember("https://ip-ranges.amazonaws.com/ip-ranges.json json 0123456789abcdef", rec)
	f.Remember("https://old.example.com/list", source.FetchRecord{Answered: now.Add(-31 * 24 * time.Hour)})
	if err := f.Save(path, now); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFetches(path)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := got.Recall("https://ip-ranges.amazonaws.com/ip-ranges.json json 0123456789abcdef")
	want := rec
	want.Answer = []netip.Prefix{netip.MustParsePrefix("193.0.2.1/32"), netip.MustParsePrefix("2001:db9::/48")}
	if diff := cmp.Diff(want, r, cmpopts.EquateComparable(netip.Prefix{})); !ok || diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	if _, ok := got.Recall("https://old.example.com/list"); ok {
		t.Error("a list no run asked about for 31 days is still remembered")
	}
	// An unchanged memory is not written again.
	info, _ := os.Stat(path)
	if err := os.Chtimes(path, info.ModTime().Add(-time.Hour), info.ModTime().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := got.Save(path, now); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Stat(path); !again.ModTime().Equal(info.ModTime().Add(-time.Hour)) {
		t.Error("an unchanged memory was rewritten")
	}
}

// The fetch file is read back as untrusted: anything a list could not
// have answered makes it corrupt, and a corrupt file is an empty memory
// (every list asked for in full), never addresses.
func TestFetchesUntrusted(t *testing.T) {
	for name, body := range map[string]string{
		"format":       `{"format_version": 9, "lists": {}}`,
		"unknown key":  `{"format_version": 1, "lists": {"https://a.example.com/l": {"answer": "193.0.2.1", "extra": 1}}}`,
		"host bits":    `{"format_version": 1, "lists": {"https://a.example.com/l": {"answer": "193.0.2.1/24"}}}`,
		"zone":         `{"format_version": 1, "lists": {"https://a.example.com/l": {"answer": "fe80::1%eth0"}}}`,
		"etag newline": `{"format_version": 1, "lists": {"https://a.example.com/l": {"etag": "a\r\nX-Evil: 1", "answer": "193.0.2.1"}}}`,
		"long token":   `{"format_version": 1, "lists": {"https://a.example.com/l": {"token": "` + strings.Repeat("9", 300) + `", "answer": "193.0.2.1"}}}`,
		"date":         `{"format_version": 1, "lists": {"https://a.example.com/l": {"last_modified": "yesterday", "answer": "193.0.2.1"}}}`,
		"time":         `{"format_version": 1, "lists": {"https://a.example.com/l": {"answered": -5, "answer": "193.0.2.1"}}}`,
		"failures":     `{"format_version": 1, "lists": {"https://a.example.com/l": {"failures": -1}}}`,
		"key":          `{"format_version": 1, "lists": {"": {"answer": "193.0.2.1"}}}`,
		"too many":     `{"format_version": 1, "lists": {"https://a.example.com/l": {"answer": "` + strings.Repeat("193.0.2.1 ", maxFetchAnswer+1) + `"}}}`,
		"trailing":     `{"format_version": 1, "lists": {}} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FetchFileName)
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := LoadFetches(path)
			var ce *CorruptError
			if !errors.As(err, &ce) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("loaded: %v", err)
			}
			if len(f.records) != 0 {
				t.Fatalf("corrupt file left %d records", len(f.records))
			}
		})
	}
	if f, err := LoadFetches(filepath.Join(t.TempDir(), "missing")); err != nil || len(f.records) != 0 {
		t.Fatalf("missing file: %v", err)
	}
}

// A record whose times are in the future is kept as read; the list
// clamps them to now when it uses them (httplist).
func FuzzFetches(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"lists":{"https://a.example.com/l":{"etag":"\"x\"","last_modified":"Thu, 26 Nov 2026 00:00:00 GMT","token":"5","answered":1764000000,"answer":"193.0.2.1 2001:db9::/48"}}}`))
	f.Add([]byte(`{"format_version":1,"lists":{"k":{"failures":3,"failed_at":1764000000}}}`))
	f.Add([]byte(`{"format_version":1,"lists":{"k":{"answer":"193.0.2.1 193.0.2.1 ::ffff:1.2.3.4"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := decodeFetches(data)
		if err != nil {
			return
		}
		for k, r := range fs.records {
			for p := range r.answer.all {
				if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
					t.Fatalf("list %q: accepted %v", k, p)
				}
			}
			if !printable(r.ETag) || !printable(r.Token) || len(r.ETag) > maxFetchText {
				t.Fatalf("list %q: accepted %q %q", k, r.ETag, r.Token)
			}
		}
		d1, err := fs.encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeFetches(d1)
		if err != nil {
			t.Fatalf("saved memory does not load: %v\n%s", err, d1)
		}
		if d2, _ := again.encode(); string(d1) != string(d2) {
			t.Fatalf("not stable:\n%s\nthen:\n%s", d1, d2)
		}
	})
}
