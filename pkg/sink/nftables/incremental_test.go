package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
	"github.com/pdsafelist/pdsafelist/pkg/testutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/netns"
)

// counting opens a live sink in ns that counts its loads (nft -f) and
// element batches.
func counting(t *testing.T, ns string) (s *Sink, loads, batches *int) {
	t.Helper()
	s = newSink(t, Options{Enforce: "ingress", Apply: true, Check: "always", Netns: ns})
	loads, batches = new(int), new(int)
	run := s.run
	s.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
		if slices.Contains(argv, "-f") && !slices.Contains(argv, "-c") {
			*loads++
		}
		return run(ctx, argv, stdin)
	}
	s.beforeFlush = func(*gnft.Conn, *gnft.Table) { *batches++ }
	return s, loads, batches
}

func webhooks(prefixes ...string) []plan.DesiredSet {
	d := plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}}
	for _, p := range prefixes {
		d.Prefixes = append(d.Prefixes, netip.MustParsePrefix(p))
	}
	return []plan.DesiredSet{d}
}

// An element-only change goes to the kernel as one batch, with no reload;
// the table then reads as a fresh load of the new file would, and the
// file loads with nft -f into an empty namespace. A structural change
// reloads the table.
func TestElementBatchInPlace(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	s, loads, batches := counting(t, p.Server)
	base := []string{"193.0.2.10/32", "44.224.0.0/24", "54.244.0.0/24", "2001:db9::10/128"}
	sync(t, s, webhooks(base...))
	if *loads != 1 || *batches != 0 {
		t.Fatalf("first sync: %d loads, %d batches; want 1 load", *loads, *batches)
	}
	steps := []struct {
		name     string
		prefixes []string
	}{
		{"one address added", append(slices.Clone(base), "193.0.2.20/32")},
		// Adjacent to 193.0.2.10: the kernel's interval is replaced by
		// the merged one, as auto-merge leaves it.
		{"adjacent address added", append(slices.Clone(base), "193.0.2.20/32", "193.0.2.11/32")},
		{"one removed, one added", []string{"193.0.2.11/32", "193.0.2.20/32", "44.224.0.0/24", "54.244.0.0/24", "2001:db9::10/128", "2001:db9::11/128"}},
	}
	for _, step := range steps {
		l0, b0 := *loads, *batches
		pl := sync(t, s, webhooks(step.prefixes...))
		if !pl.HasChanges() {
			t.Fatalf("%s: no changes planned", step.name)
		}
		if *loads != l0 || *batches != b0+1 {
			t.Errorf("%s: %d loads, %d batches; want 0 loads and 1 batch", step.name, *loads-l0, *batches-b0)
		}
		st, err := s.Current(context.Background())
		if err != nil || len(st.Drift) != 0 {
			t.Fatalf("%s: after the batch: drift %q, %v", step.name, st.Drift, err)
		}
		crossCheck(t, p.Server, "pdsafelist")
		freshLoadAgrees(t, s, p.Server)
	}
	// A new port is a new set and a new rule: the table is reloaded.
	d := webhooks(base...)
	d[0].Ports = []uint16{443, 8443}
	l0, b0 := *loads, *batches
	sync(t, s, d)
	if *loads != l0+1 || *batches != b0 {
		t.Errorf("structural change: %d loads, %d batches; want 1 load, no batch", *loads-l0, *batches-b0)
	}
	freshLoadAgrees(t, s, p.Server)
}

// freshLoadAgrees loads s's file with nft -f into an empty namespace and
// compares that table with the one the sink keeps in ns.
func freshLoadAgrees(t *testing.T, s *Sink, ns string) {
	t.Helper()
	fresh := netns.New(t)
	if out, err := fresh.Exec(fresh.Server, "nft", "-f", s.opts.Path); err != nil {
		t.Fatalf("the file does not load into an empty namespace: %v: %s", err, out)
	}
	if got, want := netlinkView(t, ns, "pdsafelist"), netlinkView(t, fresh.Server, "pdsafelist"); !viewsEqual(got, want) {
		t.Errorf("the kept table differs from a fresh load of the file:\nkept  %+v\nfresh %+v", got, want)
	}
}

func viewsEqual(a, b *view) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !slices.Equal(a.Attrs, b.Attrs) || len(a.Blocks) != len(b.Blocks) {
		return false
	}
	for k, v := range a.Blocks {
		if !slices.Equal(v, b.Blocks[k]) || !slices.Equal(a.Ranges[k], b.Ranges[k]) {
			return false
		}
	}
	return true
}

// A batch the kernel refuses changes nothing: here the element the plan
// removes was deleted by hand after the read, so the delete fails, and the
// address the same batch adds must not be there either. The error is one
// line naming the sink, and the next sync repairs the table.
func TestElementBatchFailureLeavesTable(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	s, loads, batches := counting(t, p.Server)
	sync(t, s, webhooks("193.0.2.10/32", "44.224.0.0/24"))
	before := netlinkView(t, p.Server, "pdsafelist")

	next := webhooks("193.0.2.20/32", "44.224.0.0/24")
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pl := sinktest.Plan(t, sink.Step{Sink: s}, next, st)
	if out, err := p.Exec(p.Server, "nft", "delete", "element", "inet", "pdsafelist", "webhooks_tcp443_in_v4", "{ 193.0.2.10 }"); err != nil {
		t.Fatalf("nft delete element: %v: %s", err, out)
	}
	handEdited := netlinkView(t, p.Server, "pdsafelist")
	l0, b0 := *loads, *batches
	err = s.Apply(context.Background(), pl)
	if err == nil {
		t.Fatal("Apply succeeded though its batch deletes an element that is gone")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, s.Name()) {
		t.Errorf("error is not one line naming the sink: %q", msg)
	}
	t.Logf("refused: %v", err)
	if *batches != b0+1 || *loads != l0 {
		t.Errorf("%d batches, %d loads; want the one batch", *batches-b0, *loads-l0)
	}
	if got := netlinkView(t, p.Server, "pdsafelist"); !viewsEqual(got, handEdited) {
		t.Errorf("the refused batch changed the table:\nbefore %+v\nafter  %+v", handEdited, got)
	}
	if viewsEqual(before, handEdited) {
		t.Fatal("the hand edit changed nothing")
	}
	if pl := sync(t, s, next); len(pl.Drift) == 0 {
		t.Errorf("the next sync saw no drift: %+v", pl)
	}
	freshLoadAgrees(t, s, p.Server)
}

// A rule of ours replaced by one with an expression the reader does not
// decode (log) reads as drift: the library would drop the expression and
// the rule would look like ours.
func TestUndecodedExpressionIsDrift(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	s, _, _ := counting(t, p.Server)
	sync(t, s, webhooks("193.0.2.10/32"))
	out, err := p.Exec(p.Server, "nft", "-a", "list", "chain", "inet", "pdsafelist", "ingress")
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	m := regexp.MustCompile(`(ip saddr @\S+ tcp dport 443) (accept comment "pdsafelist:webhooks") # handle (\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no rule of ours in:\n%s", out)
	}
	if out, err := p.Exec(p.Server, "nft", "replace", "rule", "inet", "pdsafelist", "ingress", "handle", m[3], m[1], "log", m[2]); err != nil {
		t.Fatalf("nft replace rule: %v: %s", err, out)
	}
	st, err := s.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Drift) == 0 {
		t.Fatal("a rule with a log expression added reads as ours")
	}
	t.Logf("drift: %q", st.Drift)
}

// The two readings agree on shapes our file never has: a range, the
// family's last address (no end element), mark matches with and without
// a mask, a counter.
func TestCrossCheckHandTable(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	path := t.TempDir() + "/hand.nft"
	const hand = `table inet pdsafelist {
	set a_tcp443_in_v4 {
		type ipv4_addr
		flags interval
		auto-merge
		elements = { 193.0.2.10/31, 10.0.0.1, 10.0.0.5-10.0.0.9, 255.255.255.255 }
	}
	set b_tcp443_in_v6 {
		type ipv6_addr
		flags interval
		elements = { 2001:db9::/64, ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120 }
	}
	chain ingress {
		type filter hook input priority filter; policy accept;
		ip saddr @a_tcp443_in_v4 tcp dport 443 accept comment "pdsafelist:a"
		ip6 saddr @b_tcp443_in_v6 udp dport 53 accept
		tcp dport { 443, 8443 } drop comment "pdsafelist:enforce"
		meta mark & 0x000000ff == 0x00000042 accept comment "x"
		meta mark 0x00000042 accept
		counter
	}
	chain plain {
	}
}
`
	if err := os.WriteFile(path, []byte(hand), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.Exec(p.Server, "nft", "-f", path); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	crossCheck(t, p.Server, "pdsafelist")
	v := netlinkView(t, p.Server, "pdsafelist")
	if got := v.Ranges["set a_tcp443_in_v4 {"]; !slices.Contains(got, "255.255.255.255-255.255.255.255") {
		t.Errorf("the last address is missing from %q", got)
	}
}

// A run trusts its stamp only while the ruleset's generation stands
// still and the file is the one verified: any change in the namespace,
// ours or not, a stamp for another file, or a garbled one, costs a full
// read, and a hand change is still found.
func TestStampSkipsDumpOnlyWhileNothingChanged(t *testing.T) {
	testutil.Integration(t, true, "ip", "nft")
	p := netns.New(t)
	s, _, batches := counting(t, p.Server)
	nft := func(args ...string) {
		t.Helper()
		if out, err := p.Exec(p.Server, append([]string{"nft"}, args...)...); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	current := func(when string, wantDump, wantDrift bool) {
		t.Helper()
		d0 := s.dumps
		st, err := s.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if dumped := s.dumps > d0; dumped != wantDump {
			t.Errorf("%s: dumped the table = %v, want %v", when, dumped, wantDump)
		}
		if drift := len(st.Drift) > 0; drift != wantDrift {
			t.Errorf("%s: drift %q, want drift = %v", when, st.Drift, wantDrift)
		}
	}
	base := webhooks("193.0.2.10/32", "44.224.0.0/24")
	sync(t, s, base)
	current("after the first load", true, false)
	current("nothing changed", false, false)

	nft("add", "table", "inet", "other")
	current("another table added", true, false)
	current("nothing changed since", false, false)

	nft("flush", "set", "inet", "pdsafelist", "webhooks_tcp443_in_v4")
	current("our set flushed", true, true)
	b0 := *batches
	sync(t, s, base)
	if *batches != b0+1 {
		t.Errorf("the repair sent %d batches, want 1", *batches-b0)
	}
	current("after the repair (its batch stamped)", false, false)

	sync(t, s, webhooks("193.0.2.10/32", "193.0.2.20/32", "44.224.0.0/24"))
	current("after one address added", false, false)

	good, err := os.ReadFile(s.stampPath())
	if err != nil {
		t.Fatal(err)
	}
	for name, forged := range map[string]string{
		"another file's sum": regexp.MustCompile(`sha256=[0-9a-f]+`).ReplaceAllString(string(good), "sha256="+strings.Repeat("ab", 32)),
		"garbled":            strings.Replace(string(good), "gen=", "gen=x", 1),
		"another boot":       regexp.MustCompile(`boot=\S+`).ReplaceAllString(string(good), "boot=00000000-0000-0000-0000-000000000000"),
	} {
		if err := os.WriteFile(s.stampPath(), []byte(forged), 0o600); err != nil {
			t.Fatal(err)
		}
		current("stamp with "+name, true, false)
	}
}

// A dump is read by hand: malformed attributes are an error, never a
// panic or an out-of-range read, and well-formed ones read back.
func TestAppendElementsMalformed(t *testing.T) {
	attr := func(typ uint16, v []byte) []byte {
		b := make([]byte, 4, 4+len(v)+3)
		binary.NativeEndian.PutUint16(b, uint16(4+len(v)))
		binary.NativeEndian.PutUint16(b[2:], typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	key := attr(unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, attr(unix.NFTA_DATA_VALUE, []byte{193, 0, 2, 10}))
	flags := attr(unix.NFTA_SET_ELEM_FLAGS, binary.BigEndian.AppendUint32(nil, unix.NFT_SET_ELEM_INTERVAL_END))
	good := attr(unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, append(attr(unix.NFTA_LIST_ELEM, key), attr(unix.NFTA_LIST_ELEM, append(slices.Clone(key), flags...))...))
	es := &points{}
	err := es.read(good)
	if err != nil || es.n != 2 || es.at(0).end || !es.at(1).end || es.at(0).n != 4 || es.at(0).a.addr(false) != netip.MustParseAddr("193.0.2.10") {
		t.Fatalf("well-formed dump read as %+v, %v", es, err)
	}
	long := attr(unix.NFTA_SET_ELEM_LIST_ELEMENTS, attr(unix.NFTA_LIST_ELEM, attr(unix.NFTA_SET_ELEM_KEY, attr(unix.NFTA_DATA_VALUE, make([]byte, 17)))))
	for name, b := range map[string][]byte{
		"truncated header": good[:2],
		"length past end":  append(binary.NativeEndian.AppendUint16(nil, 200), 0, 0, 1, 2),
		"length too short": append(binary.NativeEndian.AppendUint16(nil, 2), 0, 0),
		"cut inside":       good[:len(good)-6],
		"key of 17 bytes":  long,
	} {
		if err := (&points{}).read(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for i := range good {
		_ = (&points{}).read(good[:i]) // must not panic
	}
	// The messages around them are read in place too.
	msg := func(typ uint16, seq uint32, data []byte) []byte {
		b := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+len(data)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_MULTI)
		b = binary.NativeEndian.AppendUint32(b, seq)
		b = binary.NativeEndian.AppendUint32(b, 0)
		return append(b, data...)
	}
	nfgen := []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}
	elemMsg := msg(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM, 1, append(nfgen, good...))
	read := slices.Concat(elemMsg, msg(0x7777, 9, nil), elemMsg, msg(unix.NLMSG_DONE, 1, make([]byte, 4)))
	es = &points{}
	done, err := es.readDump(read, 1)
	if err != nil || !done || es.n != 4 {
		t.Fatalf("two element messages, another request's and done read as %d points, done %v, %v", es.n, done, err)
	}
	errno := msg(unix.NLMSG_ERROR, 1, binary.NativeEndian.AppendUint32(nil, ^uint32(unix.ENOENT)+1))
	if done, err := (&points{}).readDump(errno, 1); !done || !errors.Is(err, unix.ENOENT) {
		t.Errorf("error message read as done %v, %v", done, err)
	}
	for name, b := range map[string][]byte{
		"truncated header": elemMsg[:10],
		"length past end":  elemMsg[:len(elemMsg)-1],
		"length too short": append(binary.NativeEndian.AppendUint32(nil, 8), elemMsg[4:]...),
		"no nfgenmsg":      msg(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM, 1, []byte{1}),
	} {
		if _, err := (&points{}).readDump(b, 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for i := range read {
		_, _ = (&points{}).readDump(read[:i], 1) // must not panic
	}
}

// The table is read where nft loads: a namespace is named once, with
// netns, and an nft command line that enters another one is refused.
func TestNetnsOptions(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Apply: true, Nft: "ip netns exec other nft"}, "name it with netns"},
		{Options{Apply: true, Nft: "nsenter --net=/run/netns/x nft"}, "name it with netns"},
		{Options{Netns: "../etc"}, "netns"},
		{Options{Netns: ".."}, "netns"},
		{Options{Netns: "a b"}, "netns"},
	} {
		c.o.Path, c.o.Table = "x.nft", "pdsafelist"
		if _, err := New(c.o, "test"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error about %s", c.o, err, c.want)
		}
	}
	s, err := New(Options{Path: "x.nft", Table: "pdsafelist", Apply: true, Netns: "pdsl-x", Nft: "sudo nft"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.cmd("-f", "x.nft"), " "); got != "ip netns exec pdsl-x sudo nft -f x.nft" {
		t.Errorf("cmd = %q", got)
	}
}
