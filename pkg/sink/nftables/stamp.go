package nftables

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"

	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/nfgen"
)

// A stamp records that the loaded table was found equal to the file, its
// elements held as maximal intervals, at one generation of the ruleset.
// The kernel bumps the generation on every committed change to any table
// of the namespace, so while it stands still the table is still the file
// and a run need not dump 100,000 elements again to know it. The stamp
// names the boot and the namespace (its cookie is never reused within a
// boot) and the file's SHA-256, so it speaks for nothing else. It is a
// cache: unreadable, stale or forged one way or another, it only costs a
// full read.
type stamp struct {
	boot  string
	netns uint64
	gen   uint32
	sum   [sha256.Size]byte
}

const stampFormat = "pdsafelist verified v1 boot=%s netns=%d gen=%d sha256=%x\n"

func (st stamp) String() string { return fmt.Sprintf(stampFormat, st.boot, st.netns, st.gen, st.sum) }

// stampPath is hidden beside the file, so an include of "dir/*" does not
// load it as rules.
func (s *Sink) stampPath() string {
	return filepath.Join(filepath.Dir(s.opts.Path), "."+filepath.Base(s.opts.Path)+".verified")
}

func (s *Sink) readStamp() (stamp, bool) {
	f, err := regularfile.Open(s.stampPath())
	if err != nil {
		return stamp{}, false
	}
	defer f.Close()
	var b [256]byte
	n, _ := f.Read(b[:])
	var st stamp
	var sum []byte
	if _, err := fmt.Sscanf(string(b[:n]), stampFormat, &st.boot, &st.netns, &st.gen, &sum); err != nil || len(sum) != sha256.Size {
		return stamp{}, false
	}
	copy(st.sum[:], sum)
	// Read back exactly as written, or not at all.
	if st.String() != string(b[:n]) {
		return stamp{}, false
	}
	return st, true
}

// writeStamp replaces the stamp; a failure leaves none, which only costs
// the next run a full read.
func (s *Sink) writeStamp(st stamp) {
	sink.WriteCache(s.stampPath(), []byte(st.String()))
}

// identity is the boot, namespace and ruleset generation a reading was
// made at; ok is false when any of them could not be read.
type identity struct {
	boot  string
	netns uint64
	gen   uint32
	ok    bool
}

func (id identity) stamp(sum [sha256.Size]byte) stamp {
	return stamp{boot: id.boot, netns: id.netns, gen: id.gen, sum: sum}
}

func (id identity) matches(st stamp) bool {
	return id.ok && st.boot == id.boot && st.netns == id.netns && st.gen == id.gen
}

func (c *nlConn) identity() identity {
	id, err := nfgen.Read(c.raw)
	if err != nil {
		return identity{}
	}
	return identity{boot: id.Boot, netns: id.NetNS, gen: id.Gen, ok: true}
}

// gen reads the ruleset's generation.
func (c *nlConn) gen() (uint32, error) { return nfgen.Gen(c.raw) }
