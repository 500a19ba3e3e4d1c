package template

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/heappeak"
)

// marshalJSON is the json format as it was rendered before it streamed:
// the whole document built and indented at once.
func marshalJSON(t *testing.T, s *Sink, d Data) string {
	doc := jsonDoc{GeneratedBy: generatedBy, Owner: s.owner, Prefixes: d.Prefixes, Sets: map[string][]string{}, Entries: d.Entries}
	if doc.Prefixes == nil {
		doc.Prefixes = []netip.Prefix{}
	}
	if doc.Entries == nil {
		doc.Entries = []plan.Entry{}
	}
	for _, st := range d.Sets {
		for _, p := range st.Prefixes {
			doc.Sets[st.Name] = append(doc.Sets[st.Name], p.String())
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out) + "\n"
}

// The json format streams and writes what json.MarshalIndent of the whole
// document wrote, byte for byte: no entries, one, both families, several
// sets, an owner, and names JSON escapes.
func TestJSONStreamsMarshalIndent(t *testing.T) {
	odd := entries()
	for i := range odd {
		odd[i].Set = []string{"a<b>&c", "ü\"x", `back\slash`}[i%3]
	}
	for _, owner := range []string{"", "prod", "<&>"} {
		for _, es := range [][]plan.Entry{nil, entries()[:1], entries(), bigEntries(5), odd} {
			s := newSink(t, Options{Format: "json"})
			s.owner = owner
			es = plan.Sort(es)
			var got strings.Builder
			if err := s.renderJSON(&got, s.data(es)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(marshalJSON(t, s, s.data(es)), got.String()); diff != "" {
				t.Fatalf("owner %q, %d entries (-MarshalIndent +streamed):\n%s", owner, len(es), diff)
			}
		}
	}
}

// Issue 24: the json format held its whole document (and its indented
// copy) while it wrote: at 200,000 entries the apply's heap peaked at
// 95 MB. Streamed, about 40: the template data the format reads.
func TestJSONMemoryStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates on purpose")
	}
	const n = 200_000
	s := newSink(t, Options{Format: "json"})
	es := bigEntries(n)
	applied := heappeak.Of(func() { apply(t, s, es) })
	st, err := s.Current(context.Background())
	if err != nil || len(st.Owned) != n || len(st.Drift) != 0 {
		t.Fatalf("read back %d entries, drift %q: %v", len(st.Owned), st.Drift, err)
	}
	const applyMax = 300 * n
	t.Logf("peak heap: apply %d MB", applied>>20)
	if applied > applyMax {
		t.Errorf("apply's heap peaked at %d MB for %d entries; want at most %d MB", applied>>20, n, applyMax>>20)
	}
}
