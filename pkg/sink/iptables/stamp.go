package iptables

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/nfgen"
)

// A stamp records what `iptables -S` and `ip6tables -S` printed at one
// generation of the namespace's nf_tables ruleset. With the nf_tables
// backend every change to any rule or chain (ours, a hand edit, another
// program's) bumps that generation, so while it stands still the printed
// rules are still true and a run need not start the two processes again.
// The ipsets are not covered (they are no nf_tables objects) and are read
// on every run. The stamp is a cache in the state directory: missing,
// garbled, stale or forged one way or another, it costs the two reads;
// one that matches needs write access to the state directory, which
// already decides what the tool applies.
type stamp struct {
	Format int      `json:"format"`
	Sink   string   `json:"sink"`
	Boot   string   `json:"boot"`
	NetNS  uint64   `json:"netns"`
	Gen    uint32   `json:"gen"`
	Argv4  []string `json:"iptables"`
	Argv6  []string `json:"ip6tables"`
	Rules4 string   `json:"rules4"`
	Rules6 string   `json:"rules6"`
}

const (
	stampFormat = 1
	// maxStamp bounds what is read of a stamp; -S of a large host
	// ruleset is a few MB.
	maxStamp = 64 << 20
)

// stamper reads and writes one sink's stamp; nil when the sink cannot
// have one.
type stamper struct {
	path string
	ns   string // where netlink reads the generation
	conn *mnl.Conn
}

// newStamper returns nil unless the generation read by netlink speaks
// for the rules the commands print: a state directory to keep the stamp
// in, and the iptables commands either plain or pointed at the same
// namespace as netlink (netns set).
func newStamper(dir string, o Options, name string, ipt map[family][]string) *stamper {
	if dir == "" {
		return nil
	}
	plain := func(argv []string) bool { return len(argv) == 1 }
	if o.NetNS == "" && (!plain(ipt[4]) || !plain(ipt[6])) {
		return nil
	}
	key := sha256.Sum256([]byte(name + "\x00" + o.NetNS))
	return &stamper{path: filepath.Join(dir, "iptables-"+hex.EncodeToString(key[:8])+".verified"), ns: o.NetNS}
}

// open reads where the ruleset stands now; false when it cannot say.
func (st *stamper) open() (nfgen.Identity, bool) {
	conn, err := nfgen.Dial(st.ns)
	if err != nil {
		return nfgen.Identity{}, false
	}
	id, err := nfgen.Read(conn)
	if err != nil {
		conn.Close()
		return nfgen.Identity{}, false
	}
	st.conn = conn
	return id, true
}

func (st *stamper) close() {
	if st.conn != nil {
		_ = st.conn.Close()
		st.conn = nil
	}
}

// load returns the rules the stamp recorded if it was made at id for
// these commands.
func (st *stamper) load(id nfgen.Identity, name string, ipt map[family][]string) (map[family]string, bool) {
	f, err := regularfile.Open(st.path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStamp+1))
	if err != nil || len(b) > maxStamp {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s stamp
	if dec.Decode(&s) != nil || dec.More() {
		return nil, false
	}
	if s.Format != stampFormat || s.Sink != name || s.Boot != id.Boot || s.NetNS != id.NetNS || s.Gen != id.Gen ||
		!slices.Equal(s.Argv4, ipt[4]) || !slices.Equal(s.Argv6, ipt[6]) {
		return nil, false
	}
	return map[family]string{4: s.Rules4, 6: s.Rules6}, true
}

// save stamps rules as read at id, when the ruleset still stands at id
// and the rules live in nf_tables: the commands are iptables-nft, and
// nf_tables holds our ingress chain in both families. Otherwise (the
// legacy backend, whose changes move no generation; a change during the
// read; a read-only run) it writes nothing, and removes a stamp it can no
// longer vouch for.
func (st *stamper) save(ctx context.Context, id nfgen.Identity, name, chain string, ipt map[family][]string, rules map[family]string) {
	if sink.IsReadOnly(ctx) || st.conn == nil {
		return
	}
	ok := nftBackend(ipt[4]) && nftBackend(ipt[6])
	if ok {
		gen, err := nfgen.Gen(st.conn)
		ok = err == nil && gen == id.Gen
	}
	for _, fam := range []uint8{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6} {
		if ok {
			has, err := nfgen.HasChain(st.conn, fam, "filter", chain)
			ok = err == nil && has
		}
	}
	if !ok {
		_ = os.Remove(st.path)
		return
	}
	b, err := json.Marshal(stamp{Format: stampFormat, Sink: name, Boot: id.Boot, NetNS: id.NetNS, Gen: id.Gen,
		Argv4: ipt[4], Argv6: ipt[6], Rules4: rules[4], Rules6: rules[6]})
	if err != nil {
		return
	}
	sink.WriteCache(st.path, b)
}

// nftBackend reports whether the command line's program (its last word)
// is iptables-nft: Debian's alternatives link iptables to iptables-nft
// or iptables-legacy, each a link to its xtables multi-binary.
func nftBackend(argv []string) bool {
	if len(argv) == 0 {
		return false
	}
	path, err := exec.LookPath(argv[len(argv)-1])
	if err != nil {
		return false
	}
	if path, err = filepath.EvalSymlinks(path); err != nil {
		return false
	}
	return strings.Contains(filepath.Base(path), "-nft")
}
