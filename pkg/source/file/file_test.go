package file

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
)

func prefixes(r source.Result) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range r.Addresses {
		out = append(out, a.Prefix)
	}
	return out
}

func TestResolveReadsEachRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte("# ours\n193.0.2.0/24\n\n2001:db9::1 # one host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := listformat.New("text", "")
	src := New(path, p, 0)
	r := src.Resolve(context.Background())
	want := []netip.Prefix{netip.MustParsePrefix("193.0.2.0/24"), netip.MustParsePrefix("2001:db9::1/128")}
	if diff := cmp.Diff(want, prefixes(r), cmpopts.EquateComparable(netip.Prefix{})); diff != "" || r.Err != nil {
		t.Fatalf("err %v (-want +got):\n%s", r.Err, diff)
	}
	if r.Kind != source.KindFile || r.Name != path {
		t.Errorf("kind %q name %q", r.Kind, r.Name)
	}
	// An edit takes effect on the next run.
	if err := os.WriteFile(path, []byte("44.2.2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := prefixes(src.Resolve(context.Background())); len(got) != 1 || got[0] != netip.MustParsePrefix("44.2.2.2/32") {
		t.Errorf("after edit: %v", got)
	}
}

// Every failure is one line naming the path, and never carries addresses.
func TestFailures(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unreadable := write("unreadable.txt", "44.2.2.2\n")
	text, _ := listformat.New("text", "")
	jq, _ := listformat.New("json", ".a[]")
	for _, tc := range []struct {
		path   string
		parser *listformat.Parser
		max    int64
		want   string
	}{
		{filepath.Join(dir, "missing.txt"), text, 0, "missing.txt: no such file or directory"},
		{dir, text, 0, ": is a directory, not a regular file"},
		{write("empty.txt", "# nothing yet\n\n"), text, 0, "empty.txt: empty list"},
		{write("host-bits.txt", "193.0.2.1/24\n"), text, 0, `host-bits.txt: line 1 "193.0.2.1/24": host bits set`},
		{write("big.txt", strings.Repeat("44.2.2.2\n", 10)), text, 20, "big.txt: file larger than 20 bytes"},
		{write("num.json", `{"a": ["44.2.2.2", 443]}`), jq, 0, "num.json: jq result 2: want a string (IP or CIDR), got 443"},
		{write("bad.json", `{"a": [`), jq, 0, "bad.json: invalid JSON"},
	} {
		r := New(tc.path, tc.parser, tc.max).Resolve(context.Background())
		if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) || !strings.HasPrefix(r.Err.Error(), tc.path+":") || strings.Contains(r.Err.Error(), "\n") || r.Addresses != nil {
			t.Errorf("%s: err %v, addresses %v; want %q", tc.path, r.Err, r.Addresses, tc.want)
		}
	}
	if os.Geteuid() == 0 {
		return // root reads anything
	}
	_ = os.Chmod(unreadable, 0)
	if r := New(unreadable, text, 0).Resolve(context.Background()); r.Err == nil || !strings.Contains(r.Err.Error(), "permission denied") {
		t.Errorf("unreadable: %v", r.Err)
	}
}

// A named pipe given as a list is refused at once, naming its type: open
// would wait for a writer for ever, holding the run and its lock.
func TestNamedPipeIsRefused(t *testing.T) {
	path := testutil.FIFO(t, filepath.Join(t.TempDir(), "list.fifo"))
	p, _ := listformat.New("text", "")
	var r source.Result
	testutil.Within(t, 5*time.Second, "resolve", func() { r = New(path, p, 0).Resolve(context.Background()) })
	if want := path + ": is a named pipe, not a regular file"; r.Err == nil || r.Err.Error() != want || len(r.Addresses) != 0 {
		t.Errorf("err %v, addresses %v; want %q", r.Err, r.Addresses, want)
	}
}
