// Package state remembers what each set resolved to across runs. It lets an
// address that drops out of one answer stay for max(TTL, grace), with the
// TTL capped, so subset DNS answers do not make the firewall flap, and it
// records when a set went stale, so frozen time does not count.
package state

import (
	"errors"
	"fmt"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"io"
	"io/fs"
	"iter"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/google/renameio/v2"
)

// FormatVersion changes only with an incompatible layout; Load still reads
// format 1.
const FormatVersion = 2

// DefaultMaxTTL caps the TTL retention honours unless configured.
const DefaultMaxTTL = 24 * time.Hour

// FileName is the state file inside the state directory.
const FileName = "state.json"

// ClockFileName, next to the state file, holds each set's last success:
// the one time that changes on every run, kept apart so that the state
// file is rewritten only when what the sets answered changed.
const ClockFileName = "state.clock.json"

// Address is one prefix a set has seen, as Set.Addresses lists it.
type Address struct {
	Prefix    netip.Prefix
	FirstSeen time.Time
	// LastSeen is zero when unknown (a lost clock file); it is then taken
	// as now.
	LastSeen time.Time
	// TTL is the largest the source vouched for while the address stayed
	// in its answers; zero for lists.
	TTLSeconds int64
}

// Set is one set's memory.
//
// Its addresses are kept compact, 12 bytes an IPv4 prefix (memory): a
// million of them held as Address values (88 bytes each) took 84 MB for
// the whole run. Most addresses share their times with many others
// (every address of one answer was seen at once), so each points into a
// small table of stamps.
type Set struct {
	LastSuccess time.Time
	// StaleSince is when the set's sources first failed in a row; zero
	// while they answer.
	StaleSince time.Time
	mem        memory
	stamps     []stamp
}

// stamp is what addresses seen together share.
type stamp struct {
	first, last time.Time
	ttl         int64
}

// stamps builds a table of stamps, each once.
type stamps struct {
	table []stamp
	index map[stamp]uint32
}

func (t *stamps) add(s stamp) uint32 {
	if i, ok := t.index[s]; ok {
		return i
	}
	if t.index == nil {
		t.index = map[stamp]uint32{}
	}
	i := uint32(len(t.table))
	t.table = append(t.table, s)
	t.index[s] = i
	return i
}

// NewSet returns a set remembering addresses.
func NewSet(addresses []Address, lastSuccess, staleSince time.Time) *Set {
	s := &Set{LastSuccess: lastSuccess, StaleSince: staleSince}
	var t stamps
	for _, a := range addresses {
		s.mem.push(a.Prefix, t.add(stamp{a.FirstSeen, a.LastSeen, a.TTLSeconds}))
	}
	s.stamps = t.table
	return s
}

// Addresses lists what the set remembers, in no particular order.
func (s *Set) Addresses() []Address {
	if s == nil || s.mem.len() == 0 {
		return nil
	}
	out := make([]Address, s.mem.len())
	for i := range out {
		e := s.mem.at(i)
		st := s.stamps[e.stamp]
		out[i] = Address{Prefix: e.prefix, FirstSeen: st.first, LastSeen: st.last, TTLSeconds: st.ttl}
	}
	return out
}

// Len is how many addresses the set remembers.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.mem.len()
}

// File is the whole state file.
type File struct {
	FormatVersion int
	Sets          map[string]*Set
	// OpenAlerts are notification kinds triggered and not yet resolved.
	OpenAlerts []string
	// Scratch marks the memory of a run that will not be saved (a dry
	// run): Observe returns the same retained prefixes but does not build
	// the memory it would save, a copy of every address.
	Scratch bool
}

// New returns an empty state.
func New() *File { return &File{FormatVersion: FormatVersion, Sets: map[string]*Set{}} }

// CorruptError says the state file could not be used and was set aside.
// It is a warning: an empty state only means no retention this run, never
// a reason to delete rules.
type CorruptError struct {
	Path, MovedTo string
	Err           error
	// InPlace is a state that stays where it is until the next save
	// replaces it (one not kept in a file): there is nothing to set aside.
	InPlace bool
}

func (e *CorruptError) Error() string {
	if e.MovedTo == "" {
		return fmt.Sprintf("state %s: %v; starting with empty state", e.Path, e.Err)
	}
	return fmt.Sprintf("state %s: %v; moved it to %s and started with empty state", e.Path, e.Err, e.MovedTo)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// SetAside renames the corrupt file so it is kept for a person to read and
// the next save starts clean.
func (e *CorruptError) SetAside(now time.Time) error {
	if e.InPlace {
		return nil
	}
	aside := fmt.Sprintf("%s.corrupt-%s", e.Path, now.UTC().Format("20060102T150405Z"))
	if err := os.Rename(e.Path, aside); err != nil {
		return fmt.Errorf("state %s: set aside: %w", e.Path, unwrapPath(err))
	}
	e.MovedTo = aside
	return nil
}

// Load reads the state file and the clock file next to it. A missing
// state file is an empty state. A corrupt one is reported as a
// *CorruptError with an empty state; the caller sets it aside when it is
// going to write a new one. A missing or corrupt clock file only makes
// last successes unknown.
func Load(path string) (*File, error) {
	data, err := regularfile.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return New(), &CorruptError{Path: path, Err: unwrapPath(err)}
	}
	clock, _ := regularfile.ReadFile(clockPath(path))
	f, err := decode(data, clock)
	if err != nil {
		return New(), &CorruptError{Path: path, Err: err}
	}
	return f, nil
}

func clockPath(path string) string { return filepath.Join(filepath.Dir(path), ClockFileName) }

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Save writes the state and then the clock file, each atomically and
// only when its bytes differ from what is on disk, so a run that changed
// nothing leaves the state file's bytes and mtime alone.
func (f *File) Save(path string) error {
	data, clock, err := f.encodePieces()
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("state %s: %w", path, unwrapPath(err))
	}
	// The clock goes first. Cut off between the two, the clock is newer
	// than the state file, which dates the last answer's addresses later
	// than they were seen and keeps them longer; the other order would end
	// their windows early.
	for _, w := range []struct {
		path   string
		pieces []string
	}{{clockPath(path), []string{string(clock)}}, {path, data}} {
		size := 0
		for _, p := range w.pieces {
			size += len(p)
		}
		if sameContent(w.path, slices.Values(w.pieces), size) {
			continue
		}
		if err := writeFile(w.path, slices.Values(w.pieces)); err != nil {
			return fmt.Errorf("state %s: %w", w.path, unwrapPath(err))
		}
	}
	return nil
}

// writeFile replaces path with the pieces, atomically, as
// renameio.WriteFile does with one buffer.
func writeFile(path string, pieces iter.Seq[string]) error {
	t, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644), renameio.WithExistingPermissions())
	if err != nil {
		return err
	}
	defer t.Cleanup()
	for p := range pieces {
		if _, err := io.WriteString(t, p); err != nil {
			return err
		}
	}
	return t.CloseAtomicallyReplace()
}

// sameContent reports whether the file at path holds exactly the pieces
// one after another, read in pieces rather than whole; size, unless -1,
// is their length, checked first.
func sameContent(path string, pieces iter.Seq[string], size int) bool {
	f, err := regularfile.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || (size >= 0 && fi.Size() != int64(size)) {
		return false
	}
	buf := make([]byte, 64<<10)
	for data := range pieces {
		for len(data) > 0 {
			n, err := io.ReadFull(f, buf[:min(len(buf), len(data))])
			if err != nil || string(buf[:n]) != data[:n] {
				return false
			}
			data = data[n:]
		}
	}
	n, _ := f.Read(buf[:1])
	return n == 0
}

// Seen is one address a source returned this run.
type Seen struct {
	Prefix netip.Prefix
	TTL    time.Duration
}

// Window is how long an address stays after it was last seen:
// max(min(TTL, MaxTTL), Grace).
type Window struct {
	Grace time.Duration
	// MaxTTL caps the TTL honoured; zero means DefaultMaxTTL.
	MaxTTL time.Duration
}

func (w Window) keep(ttlSeconds int64) time.Duration {
	maxTTL := w.MaxTTL
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	// Compared in seconds: a TTL read from an edited file could overflow a
	// Duration.
	ttl := maxTTL
	if ttlSeconds < int64(maxTTL/time.Second) {
		ttl = time.Duration(max(ttlSeconds, 0)) * time.Second
	}
	return max(ttl, w.Grace)
}

// Observe records a successful resolution of a set and returns the
// prefixes still within retention that this answer did not include.
// Addresses past their window are forgotten. It sorts seen in place.
//
// A set with no history (a lost, corrupt or fresh state) takes held, what
// the sinks hold for it under our ownership, as seen now: a cold start must
// never remove an address DNS may still serve. A set recovering from a
// freeze gets back the time it spent frozen: its sources could not say
// anything, so that time does not count against what it remembers.
func (f *File) Observe(set string, seen []Seen, held []netip.Prefix, now time.Time, w Window) []netip.Prefix {
	news := maxTTLByPrefix(seen)
	return f.ObserveSorted(set, slices.Values(news), len(news), held, now, w)
}

// ObserveSorted is Observe of an answer already in order: news yields
// masked prefixes sorted by prefix, each once with the largest TTL it came
// with, and can be ranged over more than once; n is at least how many it
// yields. An answer merged from sorted lists as it is read needs no copy.
func (f *File) ObserveSorted(set string, news iter.Seq[Seen], n int, held []netip.Prefix, now time.Time, w Window) []netip.Prefix {
	s := f.set(set, now)
	if s.mem.len() == 0 {
		var t stamps
		t.table = s.stamps
		for _, p := range held {
			if p.IsValid() {
				s.mem.push(p.Masked(), t.add(stamp{first: now, last: now}))
			}
		}
		s.stamps = t.table
	}
	if !s.StaleSince.IsZero() {
		for i := range s.stamps {
			st := &s.stamps[i]
			// Age before the freeze counts; the freeze itself does not.
			st.last = now.Add(-max(s.StaleSince.Sub(st.last), 0))
		}
	}
	// Both sides are sorted by prefix and met in one merge pass: no hash
	// map of a million addresses.
	olds := s.latestByPrefix()
	if f.Scratch {
		return retainedOnly(olds, s.stamps, news, now, w)
	}
	// An answer with nothing new (a run with no change) is written over
	// the memory it is merged with: each address read is written at or
	// before where it was read.
	var kept memory
	if onlyKnown(news, olds) {
		kept = olds.reuse()
	} else {
		// Sized by family: one pass over the answer.
		n4, n6 := 0, 0
		for a := range news {
			if a.Prefix.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
		kept = memory{make([]entry4, 0, n4+len(olds.v4)/8), make([]entry6, 0, n6+len(olds.v6)/8)}
	}
	// The stamps are built anew, so those no address uses any more go.
	var out stamps
	moved := make([]uint32, len(s.stamps))
	for i := range moved {
		moved[i] = math.MaxUint32
	}
	keep := func(e entry) uint32 {
		if moved[e.stamp] == math.MaxUint32 {
			moved[e.stamp] = out.add(s.stamps[e.stamp])
		}
		return moved[e.stamp]
	}
	var retained []netip.Prefix
	retain := func(e entry) {
		st := s.stamps[e.stamp]
		if now.Sub(st.last) < w.keep(st.ttl) {
			kept.push(e.prefix, keep(e))
			retained = append(retained, e.prefix)
		}
	}
	i, nOld := 0, olds.len()
	for a := range news {
		for ; i < nOld && plan.ComparePrefix(olds.at(i).prefix, a.Prefix) < 0; i++ {
			retain(olds.at(i))
		}
		na := stamp{first: now, last: now, ttl: int64(a.TTL / time.Second)}
		if i < nOld && olds.at(i).prefix == a.Prefix {
			old := s.stamps[olds.at(i).stamp]
			i++
			na.first = old.first
			// A cache counts TTLs down; keeping the largest while the
			// address stays in the answers keeps the file unchanged.
			if old.last.Equal(s.LastSuccess) {
				na.ttl = max(na.ttl, old.ttl)
			}
		}
		kept.push(a.Prefix, out.add(na))
	}
	for ; i < nOld; i++ {
		retain(olds.at(i))
	}
	s.mem, s.stamps = kept, out.table
	s.LastSuccess = now
	s.StaleSince = time.Time{}
	return retained
}

// retainedOnly is what Observe returns, without the memory it keeps: the
// remembered prefixes, sorted, that news lacks and whose window is open.
func retainedOnly(olds memory, stamps []stamp, news iter.Seq[Seen], now time.Time, w Window) []netip.Prefix {
	nOld := olds.len()
	if nOld == 0 {
		return nil
	}
	var retained []netip.Prefix
	keep := func(e entry) {
		if st := stamps[e.stamp]; now.Sub(st.last) < w.keep(st.ttl) {
			retained = append(retained, e.prefix)
		}
	}
	i := 0
	for a := range news {
		for ; i < nOld && plan.ComparePrefix(olds.at(i).prefix, a.Prefix) < 0; i++ {
			keep(olds.at(i))
		}
		if i < nOld && olds.at(i).prefix == a.Prefix {
			i++
		}
	}
	for ; i < nOld; i++ {
		keep(olds.at(i))
	}
	return retained
}

// onlyKnown reports whether every prefix of news, sorted, is in olds,
// sorted.
func onlyKnown(news iter.Seq[Seen], olds memory) bool {
	i, nOld := 0, olds.len()
	for a := range news {
		for i < nOld && plan.ComparePrefix(olds.at(i).prefix, a.Prefix) < 0 {
			i++
		}
		if i == nOld || olds.at(i).prefix != a.Prefix {
			return false
		}
		i++
	}
	return true
}

// sortSeen sorts seen by prefix. An answer is its sources' sorted lists
// one after another, so the runs already in order are merged pairwise
// (a few passes) rather than the whole sorted again; many runs are sorted.
// The result is seen or a buffer of its size.
func sortSeen(seen []Seen) []Seen {
	byPrefix := func(a, b Seen) int { return plan.ComparePrefix(a.Prefix, b.Prefix) }
	var runs []int // start of each run, then len(seen)
	for i := range seen {
		if i == 0 || byPrefix(seen[i-1], seen[i]) > 0 {
			runs = append(runs, i)
			if len(runs) > 64 {
				slices.SortFunc(seen, byPrefix)
				return seen
			}
		}
	}
	if len(runs) <= 1 {
		return seen
	}
	runs = append(runs, len(seen))
	src, dst := seen, make([]Seen, len(seen))
	for len(runs) > 2 {
		next := runs[:0:0]
		for r := 0; r+1 < len(runs); r += 2 {
			lo, mid := runs[r], runs[r+1]
			hi := mid
			if r+2 < len(runs) {
				hi = runs[r+2]
			}
			next = append(next, lo)
			a, b, out := src[lo:mid], src[mid:hi], dst[lo:lo]
			for len(a) > 0 && len(b) > 0 {
				// Ties take a first: the merge is stable.
				if byPrefix(b[0], a[0]) < 0 {
					out, b = append(out, b[0]), b[1:]
				} else {
					out, a = append(out, a[0]), a[1:]
				}
			}
			out = append(append(out, a...), b...)
		}
		next = append(next, len(seen))
		runs = next
		src, dst = dst, src
	}
	return src
}

// latestByPrefix sorts the set's memory (in place, stably) by prefix
// and keeps, of each prefix, the first with the latest last seen.
func (s *Set) latestByPrefix() memory {
	s.mem.latest(func(a, b uint32) bool { return s.stamps[b].last.Before(s.stamps[a].last) })
	return s.mem
}

// maxTTLByPrefix returns the answer's masked prefixes sorted, each once
// with the largest TTL it came with, in seen's memory.
func maxTTLByPrefix(seen []Seen) []Seen {
	out := seen
	for i := range out {
		out[i].Prefix = out[i].Prefix.Masked()
	}
	out = sortSeen(out)
	merged := out[:0]
	for _, a := range out {
		if n := len(merged); n > 0 && merged[n-1].Prefix == a.Prefix {
			merged[n-1].TTL = max(merged[n-1].TTL, a.TTL)
			continue
		}
		merged = append(merged, a)
	}
	return merged
}

// Remembers reports whether a set has addresses in memory; Observe uses
// held only for a set that has none.
func (f *File) Remembers(set string) bool {
	s := f.Sets[set]
	return s != nil && s.mem.len() > 0
}

// MarkStale records that a set's sources failed; the first failure in a
// row sets StaleSince, and it is returned.
func (f *File) MarkStale(set string, now time.Time) time.Time {
	s := f.set(set, now)
	if s.StaleSince.IsZero() {
		s.StaleSince = now
	}
	return s.StaleSince
}

// Known returns what a set remembers within its window. For a frozen set
// the window is measured at StaleSince, since frozen time does not count,
// and its last answer is known whatever the window: a zero grace lets an
// address go once its source stops listing it, and a frozen source has
// stopped listing nothing.
func (f *File) Known(set string, now time.Time, w Window) []netip.Prefix {
	s, ok := f.Sets[set]
	if !ok || s == nil {
		return nil
	}
	s.clamp(now)
	at := now
	if !s.StaleSince.IsZero() {
		at = s.StaleSince
	}
	var out []netip.Prefix
	for i := range s.mem.len() {
		e := s.mem.at(i)
		st := s.stamps[e.stamp]
		lastAnswer := !s.StaleSince.IsZero() && !st.last.Before(s.LastSuccess)
		if lastAnswer || at.Sub(st.last) < w.keep(st.ttl) {
			out = append(out, e.prefix)
		}
	}
	sort.Slice(out, func(i, j int) bool { return plan.ComparePrefix(out[i], out[j]) < 0 })
	return out
}

// set returns a set's memory, creating it, with times clamped to now.
func (f *File) set(name string, now time.Time) *Set {
	s := f.Sets[name]
	if s == nil {
		s = &Set{}
		f.Sets[name] = s
	}
	s.clamp(now)
	return s
}

// clamp pulls times in the future (a clock that jumped back, an edited
// file) to now: trusted as they are, they would pin an address for as long
// as the future is far. An unknown last seen is taken as now.
func (s *Set) clamp(now time.Time) {
	for i := range s.stamps {
		st := &s.stamps[i]
		if st.last.IsZero() {
			st.last = now
		}
		st.last = earliest(st.last, now)
		st.first = earliest(st.first, st.last)
	}
	s.LastSuccess = earliest(s.LastSuccess, now)
	s.StaleSince = earliest(s.StaleSince, now)
}

func earliest(t, now time.Time) time.Time {
	if t.After(now) {
		return now
	}
	return t
}

// DefaultDir is /var/lib/pdsafelist for root and the XDG state directory
// otherwise.
func DefaultDir(euid int, getenv func(string) string) string {
	if euid == 0 {
		return "/var/lib/pdsafelist"
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "pdsafelist")
	}
	return filepath.Join(getenv("HOME"), ".local", "state", "pdsafelist")
}
