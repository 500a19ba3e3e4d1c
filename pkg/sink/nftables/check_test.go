package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// spreadSets is desired() with n4 IPv4 and n6 IPv6 addresses in each set,
// none adjacent, so no aggregation joins them: six nft sets over two
// directions and both families.
func spreadSets(n4, n6 int) []plan.DesiredSet {
	d := desired()
	for i := range d {
		var ps []netip.Prefix
		for j := range n4 {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], uint32(44+10*i)<<24|uint32(2*j))
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(a), 32))
		}
		for j := range n6 {
			a := netip.MustParseAddr("2001:db9::").As16()
			a[13] = byte(i)
			binary.BigEndian.PutUint16(a[14:], uint16(2*j))
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(a), 128))
		}
		d[i].Prefixes = ps
	}
	return d
}

// assertRemoved fails t for each checked file still there: the pending
// file, and so each piece, may live in os.TempDir, not beside the file.
func assertRemoved(t *testing.T, paths []string) {
	t.Helper()
	for _, path := range paths {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("checked file %s left behind: %v", path, err)
		}
	}
}

// assertOldKept: after a refused piece the old file is as it was and no
// piece or pending file is left beside it.
func assertOldKept(t *testing.T, path string, old []byte, checked []string) {
	t.Helper()
	if now, _ := os.ReadFile(path); string(now) != string(old) {
		t.Error("old file replaced despite a refused piece")
	}
	assertRemoved(t, checked)
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*")); len(left) != 1 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func lowerPieceSize(t *testing.T, n int) {
	t.Helper()
	old := checkPieceSize
	checkPieceSize = n
	t.Cleanup(func() { checkPieceSize = old })
}

// checkRecorder stands in for nft -c: it keeps each file it was asked to
// check, refuses the refuse-th one (counted from 1), and hands every call
// to next when set.
type checkRecorder struct {
	paths, files []string
	refuse       int
	next         func(context.Context, []string, []byte) ([]byte, error)
}

func (r *checkRecorder) run(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	if slices.Contains(argv, "-c") {
		path := argv[len(argv)-1]
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		r.paths, r.files = append(r.paths, path), append(r.files, string(data))
		if len(r.files) == r.refuse {
			return []byte("Error: syntax error, unexpected junk\nline 2\n"), errors.New("exit status 1")
		}
	}
	if r.next != nil {
		return r.next(ctx, argv, stdin)
	}
	return nil, nil
}

// splitFile separates a rendered file into its elements ("SET PREFIX")
// and the rest with every elements block cut out. It reports a comma
// missing after any element but a set's last, or one after the last.
func splitFile(t *testing.T, text string) (elements []string, rest string, empty []string) {
	t.Helper()
	var b strings.Builder
	var set string
	var block []string
	in, hadBlock := false, false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case in && l == "\t\t}":
			for i, e := range block {
				if strings.HasSuffix(e, ",") != (i < len(block)-1) {
					t.Errorf("set %s: element %d of %d is %q: comma misplaced", set, i+1, len(block), e)
				}
				elements = append(elements, set+" "+strings.TrimSuffix(e, ","))
			}
			in, block = false, nil
			continue
		case in:
			block = append(block, strings.TrimSpace(l))
			continue
		case l == "\t\telements = {":
			in, hadBlock = true, true
			continue
		case strings.HasPrefix(l, "\tset "):
			set, hadBlock = strings.TrimSuffix(strings.TrimPrefix(l, "\tset "), " {"), false
		case l == "\t}" && set != "":
			if !hadBlock {
				empty = append(empty, set)
			}
			set = ""
		}
		b.WriteString(l + "\n")
	}
	if in {
		t.Fatal("unclosed elements block")
	}
	return elements, b.String(), empty
}

// A file with more elements than a piece holds is checked as complete
// files of at most that many elements: every element is checked exactly
// once, every piece carries the file's table, sets, chains and rules, and
// no piece is left behind.
func TestCheckInPieces(t *testing.T) {
	const piece = 7
	lowerPieceSize(t, piece)
	s := newSink(t, Options{Check: "always", Enforce: "both"})
	rec := &checkRecorder{}
	s.run = rec.run
	p := sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(5, 3), plan.State{})
	entries := p.Result()
	if len(entries) != 2*8+8 {
		t.Fatalf("%d entries, want 24", len(entries))
	}
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if want := (len(entries) + piece - 1) / piece; len(rec.files) != want {
		t.Fatalf("%d nft -c calls, want %d", len(rec.files), want)
	}
	data, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(s.render(entries)) {
		t.Fatal("the file written differs from its render")
	}
	wantElems, wantRest, none := splitFile(t, string(data))
	if len(wantElems) != len(entries) || len(none) != 0 {
		t.Fatalf("the real file has %d elements and empty sets %q; want %d and none", len(wantElems), none, len(entries))
	}
	var got []string
	sawEmpty := false
	for i, f := range rec.files {
		elems, rest, empty := splitFile(t, f)
		if len(elems) == 0 || len(elems) > piece {
			t.Errorf("piece %d holds %d elements, want 1 to %d", i+1, len(elems), piece)
		}
		if diff := cmp.Diff(wantRest, rest); diff != "" {
			t.Errorf("piece %d: lines other than elements differ from the file's (-want +got):\n%s", i+1, diff)
		}
		sawEmpty = sawEmpty || len(empty) > 0
		got = append(got, elems...)
	}
	if !sawEmpty {
		t.Error("no piece left a set empty; the test does not cover empty sets")
	}
	slices.Sort(got)
	slices.Sort(wantElems)
	if diff := cmp.Diff(wantElems, got); diff != "" {
		t.Errorf("elements of the pieces against the file's (-want +got):\n%s", diff)
	}
	assertRemoved(t, rec.paths)
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.opts.Path), "*")); len(left) != 1 {
		t.Errorf("files left behind: %v", left)
	}
}

// A file within one piece is checked as it is, once.
func TestCheckSmallFileWhole(t *testing.T) {
	s := newSink(t, Options{Check: "always"})
	p := sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(5, 3), plan.State{})
	lowerPieceSize(t, len(p.Result()))
	rec := &checkRecorder{}
	s.run = rec.run
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.opts.Path)
	if len(rec.files) != 1 || rec.files[0] != string(data) {
		t.Fatalf("%d nft -c calls; want one, of the whole file", len(rec.files))
	}
}

// nft refusing a piece in the middle stops the check: the old file stays,
// the error is nft's first line, and no piece is left behind.
func TestCheckRefusedPieceKeepsOldFile(t *testing.T) {
	lowerPieceSize(t, 7)
	s := newSink(t, Options{Check: "always"})
	rec := &checkRecorder{}
	s.run = rec.run
	sync(t, s, spreadSets(2, 1))
	old, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	*rec = checkRecorder{refuse: 2}
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(5, 3), st))
	want := fmt.Sprintf("%s: nft -c rejected the new file, old file kept: Error: syntax error, unexpected junk", s.Name())
	if err == nil || err.Error() != want {
		t.Fatalf("Apply = %v\nwant %s", err, want)
	}
	if len(rec.files) != 2 {
		t.Errorf("%d nft -c calls; want 2, none after the refusal", len(rec.files))
	}
	assertOldKept(t, s.opts.Path, old, rec.paths)
}

// A cancelled check leaves no piece behind either.
func TestCheckCancelledRemovesPieces(t *testing.T) {
	lowerPieceSize(t, 7)
	s := newSink(t, Options{Check: "always"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &checkRecorder{next: func(ctx context.Context, _ []string, _ []byte) ([]byte, error) {
		cancel()
		return nil, ctx.Err()
	}}
	s.run = rec.run
	err := s.Apply(ctx, sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(5, 3), plan.State{}))
	if err == nil || len(rec.files) != 1 {
		t.Fatalf("Apply = %v after %d nft -c calls; want an error after 1", err, len(rec.files))
	}
	assertRemoved(t, rec.paths)
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.opts.Path), "*")); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}

// Without CAP_NET_ADMIN, check=auto skips the check on the first piece,
// as it does for a whole file.
func TestCheckPiecesUnprivilegedAuto(t *testing.T) {
	lowerPieceSize(t, 7)
	s := newSink(t, Options{Check: "auto", Nft: "true"})
	calls := 0
	s.run = func(context.Context, []string, []byte) ([]byte, error) {
		calls++
		return []byte("Error: Could not process rule: Operation not permitted\n"), errors.New("exit status 1")
	}
	if err := s.Apply(context.Background(), sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(5, 3), plan.State{})); err != nil {
		t.Fatalf("Apply = %v", err)
	}
	if calls != 1 {
		t.Errorf("%d nft -c calls; want 1", calls)
	}
	if _, err := os.Stat(s.opts.Path); err != nil {
		t.Error(err)
	}
}

// Real nft checks a few thousand entries over both families in pieces,
// some of them with empty sets; an element nft refuses in a later piece
// fails the check and keeps the old file.
func TestCheckPiecesWithNft(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	const piece = 1000
	lowerPieceSize(t, piece)
	pair := netns.New(t)
	s := newSink(t, Options{Check: "always", Enforce: "both", Nft: "ip netns exec " + pair.Server + " nft"})
	rec := &checkRecorder{next: runCommand}
	s.run = rec.run
	p := sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(1200, 400), plan.State{})
	entries := p.Result()
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if want := (len(entries) + piece - 1) / piece; len(rec.files) != want || want < 3 {
		t.Fatalf("%d nft -c calls, want %d (at least 3)", len(rec.files), want)
	}
	assertRemoved(t, rec.paths)
	sawEmpty := false
	for _, f := range rec.files {
		_, _, empty := splitFile(t, f)
		sawEmpty = sawEmpty || len(empty) > 0
	}
	if !sawEmpty {
		t.Error("no piece left a set empty; nft did not see one")
	}
	// The whole file passes too: the pieces are the file's own shape.
	if out, err := runCommand(context.Background(), s.cmd("-c", "-f", s.opts.Path), nil); err != nil {
		t.Fatalf("nft -c of the whole file: %v: %s", err, out)
	}
	old, err := os.ReadFile(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}

	// An entry whose prefix is not valid renders as "invalid Prefix",
	// which nft refuses; it sorts next to the last entry, so the last
	// piece holds it.
	bad := entries[len(entries)-1]
	bad.Prefix = netip.PrefixFrom(bad.Prefix.Addr(), 200)
	*rec = checkRecorder{next: runCommand}
	err = s.Apply(context.Background(), plan.SinkPlan{Keep: entries, Add: []plan.Entry{bad}})
	prefix := s.Name() + ": nft -c rejected the new file, old file kept: "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), "Error:") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Apply with a bad element = %v; want one line starting %q", err, prefix)
	}
	t.Logf("refused: %v", err)
	if len(rec.files) < 2 || !strings.Contains(rec.files[len(rec.files)-1], "invalid Prefix") {
		t.Errorf("refused after %d pieces; want a later piece holding the bad element", len(rec.files))
	}
	assertOldKept(t, s.opts.Path, old, rec.paths)
}

// A plan whose Keep and Add are walked apart (plan.SinkPlan.Runs) is
// checked in the same pieces, byte for byte, and written to the same
// file, as the same entries merged into one list.
func TestCheckInPiecesOfRuns(t *testing.T) {
	lowerPieceSize(t, 7)
	files := func(p plan.SinkPlan) ([]string, string) {
		s := newSink(t, Options{Check: "always", Enforce: "both"})
		rec := &checkRecorder{}
		s.run = rec.run
		if err := s.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(s.opts.Path)
		if err != nil {
			t.Fatal(err)
		}
		return rec.files, string(data)
	}
	s := newSink(t, Options{})
	all := sinktest.Plan(t, sink.Step{Sink: s}, spreadSets(40, 3), plan.State{}).Result()
	// Three entries added, spread through the file; the rest kept.
	var keep, add []plan.Entry
	for i, e := range all {
		if i == 0 || i == 57 || i == len(all)-1 {
			add = append(add, e)
		} else {
			keep = append(keep, e)
		}
	}
	apart := plan.SinkPlan{Keep: keep, Add: add}
	if n := len(apart.Runs()); n < 4 {
		t.Fatalf("the plan is %d runs; the test needs Keep and Add apart", n)
	}
	wantPieces, wantFile := files(plan.SinkPlan{Add: all})
	gotPieces, gotFile := files(apart)
	if len(wantPieces) < 3 {
		t.Fatalf("%d pieces; the test needs several", len(wantPieces))
	}
	if diff := cmp.Diff(wantPieces, gotPieces); diff != "" {
		t.Errorf("pieces checked (-one list +runs):\n%s", diff)
	}
	if gotFile != wantFile {
		t.Error("the file written from runs differs from the one written from one list")
	}
}

// The everyday change, one address added to a large file, writes it from
// the plan's Keep and Add as they are: before, the apply merged them into
// a copy of every entry (11 MB at 200,000; 56 MB at a million, at the
// peak of such a run).
func TestOneAddressAddedHoldsNoCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates on purpose")
	}
	const n = 200_000
	s := newSink(t, Options{})
	d := spreadSets(n, 0)[:1]
	all := sinktest.Plan(t, sink.Step{Sink: s}, d, plan.State{}).Result()
	if len(all) < n {
		t.Fatalf("%d entries, want %d", len(all), n)
	}
	added := all[len(all)/2]
	keep := append(slices.Clone(all[:len(all)/2]), all[len(all)/2+1:]...)
	all = nil
	sinktest.OneAddedHoldsNoCopy(t, s, keep, added)
}
