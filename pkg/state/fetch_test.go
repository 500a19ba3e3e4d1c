package state

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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

// encoderBytes is the fetch file as it was written before it streamed: a
// json.Encoder indented by one space, of the whole file.
func encoderBytes(t *testing.T, f *Fetches) string {
	v := fetchFileV1{FormatVersion: fetchFormat, Lists: map[string]fetchRecordV1{}}
	for k, r := range f.records {
		var b prefixList
		for p := range r.answer.all {
			b.add(p)
		}
		v.Lists[k] = fetchRecordV1{ETag: r.ETag, LastModified: r.LastModified, Token: r.Token, Answered: unixSeconds(r.Answered),
			Failures: r.Failures, FailedAt: unixSeconds(r.FailedAt), Answer: b.String()}
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// The fetch file is written list by list, and its bytes are the ones the
// json.Encoder of the whole file wrote, so files saved before load and
// compare unchanged.
func TestFetchPiecesAsEncoder(t *testing.T) {
	answer := []netip.Prefix{netip.MustParsePrefix("193.0.2.1/32"), netip.MustParsePrefix("2001:db9::/48")}
	for _, recs := range []map[string]source.FetchRecord{
		{},
		{"https://a.example.com/l json 0123": {ETag: `"x<&>"`, LastModified: "Thu, 26 Nov 2026 00:00:00 GMT", Token: "5", Answered: t0, Answer: answer}},
		{"k<1>": {Failures: 3, FailedAt: t0}, "k&2": {}, "k3": {Answer: answer[:1], Answered: t0.Add(time.Second / 2)}},
	} {
		f := NewFetches()
		for k, r := range recs {
			f.Remember(k, r)
		}
		got, err := f.encode()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(encoderBytes(t, f), string(got)); diff != "" {
			t.Errorf("%d lists (-encoder +pieces):\n%s", len(recs), diff)
		}
	}
}

// Issue 24: Remember copied every answer before checking it (32 bytes an
// address), garbage while all of a run's lists were fetched: 32 MB at a
// million addresses, on top of the caller's own. A merged answer, as every
// list gives, is checked where it is and only packed (5 bytes an IPv4
// address); any other is still copied, so the caller's slice never changes.
func TestRememberCopiesOnlyWhatItMustChange(t *testing.T) {
	const n = 100_000
	answer := make([]netip.Prefix, n)
	for i := range answer {
		answer[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	f := NewFetches()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f.Remember("https://lists.example.com/l", source.FetchRecord{Answer: answer, Answered: t0})
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 8*n {
		t.Errorf("remembering a merged answer allocated %d bytes an address; want its packing only (5)", got/n)
	}
	if r, _ := f.Recall("https://lists.example.com/l"); !slices.Equal(r.Answer, answer) {
		t.Errorf("recalled %d prefixes, want the %d remembered", len(r.Answer), n)
	}
	// An answer out of order, with a duplicate, is sorted in a copy.
	mixed := []netip.Prefix{answer[2], answer[0], answer[2]}
	kept := slices.Clone(mixed)
	f.Remember("https://lists.example.com/m", source.FetchRecord{Answer: mixed, Answered: t0})
	if !slices.Equal(mixed, kept) {
		t.Errorf("the caller's answer changed to %v", mixed)
	}
	if r, _ := f.Recall("https://lists.example.com/m"); !slices.Equal(r.Answer, []netip.Prefix{answer[0], answer[2]}) {
		t.Errorf("recalled %v", r.Answer)
	}
}
