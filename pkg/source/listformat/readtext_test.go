package listformat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// readTextCases are the inputs the streamed reader must read as the whole
// body is read: comments, BOM, CRLF, blank and overlong lines, every error.
var readTextCases = []string{
	"193.0.2.1\n198.52.100.0/24\n", "# c\n\n 2001:db9::1 # x\r\n", "\ufeff193.0.2.1", "\ufeff", "\xef\xbb", "193.0.2.1/24",
	"1.2.3.4\u00a0\n", "\u20281.2.3.4", "01.2.3.4\n", "1.2.3.4\n#\n\n5.6.7.8", "\xff1.2.3.4", " \t1.2.3.4\t\r\n",
	"", "\n", "# only\n", "44.2.2.2\n44.2.2.2\n44.2.2.0/31\n2001:db9::/48\n::ffff:1.2.3.4\n44.2.2.2",
	"44.2.2.2 extra\n", "1.2.3.4\nbad\n" + strings.Repeat("x", 100_000),
	// Lines longer than the reader's buffer.
	strings.Repeat(" ", 70_000) + "193.0.2.7" + strings.Repeat(" ", 70_000) + "# " + strings.Repeat("c", 70_000) + "\n44.2.2.2\n",
	"44.2.2.2\n" + strings.Repeat("9", 200_000) + "\n",
	strings.Repeat("193.0.2.1\n", MaxEntries) + "\n# end\n",
	strings.Repeat("193.0.2.1\n", MaxEntries) + "193.0.2.2",
}

// want is what a source made of the whole body: Addresses, then Merge.
func wantText(t testing.TB, data []byte) ([]source.Address, error) {
	p, err := New("text", "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Addresses(context.Background(), data)
	if err != nil {
		return nil, err
	}
	return source.Merge(out), nil
}

func checkReadText(t *testing.T, data []byte) {
	want, werr := wantText(t, data)
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(data),
		"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		"halves":   iotest.HalfReader(bytes.NewReader(data)),
	} {
		got, gerr := ReadText(r)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%.80q read %s: error %v, the whole body's %v", data, name, gerr, werr)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%.80q read %s (-whole body +streamed):\n%s", data, name, diff)
		}
	}
}

// The streamed text reader and the whole body's agree on every input: the
// same merged addresses, or the same error.
func TestReadTextMatchesTheWholeBody(t *testing.T) {
	for _, s := range readTextCases {
		checkReadText(t, []byte(s))
	}
}

func FuzzReadText(f *testing.F) {
	for _, s := range readTextCases[:16] {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkReadText(t, data) })
}

// An error of the reader ends the list and is returned as it is, at the
// start (where the byte-order mark is looked for) or later.
func TestReadTextReaderError(t *testing.T) {
	broken := errors.New("connection reset")
	for _, r := range []io.Reader{
		iotest.ErrReader(broken),
		io.MultiReader(strings.NewReader("44.2.2.2\n44.2."), iotest.ErrReader(broken)),
		io.MultiReader(strings.NewReader("44.2.2.2\n"+strings.Repeat(" ", 100_000)), iotest.ErrReader(broken)),
	} {
		if out, err := ReadText(r); !errors.Is(err, broken) || out != nil {
			t.Errorf("got %d addresses, error %v; want %v", len(out), err, broken)
		}
	}
}
