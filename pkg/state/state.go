// Package state remembers what each set resolved to across runs. It lets an
// address that drops out of one answer stay for max(TTL, grace), so subset
// DNS answers do not make the firewall flap, and it records when a set went
// stale.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/renameio/v2"
)

// FormatVersion changes only with an incompatible layout.
const FormatVersion = 1

// DefaultMaxTTL caps the TTL retention honours unless configured.
const DefaultMaxTTL = 24 * time.Hour

// FileName is the state file inside the state directory.
const FileName = "state.json"

// Address is one prefix a set has seen.
type Address struct {
	Prefix    netip.Prefix `json:"prefix"`
	FirstSeen time.Time    `json:"first_seen"`
	LastSeen  time.Time    `json:"last_seen"`
	// TTL is what the source vouched for when last seen; zero for lists.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// Set is one set's memory.
type Set struct {
	Addresses   []Address `json:"addresses"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// StaleSince is when the set's sources first failed in a row; zero
	// while they answer.
	StaleSince time.Time `json:"stale_since,omitzero"`
}

// File is the whole state file.
type File struct {
	FormatVersion int             `json:"format_version"`
	Sets          map[string]*Set `json:"sets"`
	// OpenAlerts are notification kinds triggered and not yet resolved.
	OpenAlerts []string `json:"open_alerts,omitempty"`
}

// New returns an empty state.
func New() *File { return &File{FormatVersion: FormatVersion, Sets: map[string]*Set{}} }

// CorruptError says the state file could not be used and was set aside.
// It is a warning: an empty state only means no retention this run, never
// a reason to delete rules.
type CorruptError struct {
	Path, MovedTo string
	Err           error
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
	aside := fmt.Sprintf("%s.corrupt-%s", e.Path, now.UTC().Format("20060102T150405Z"))
	if err := os.Rename(e.Path, aside); err != nil {
		return fmt.Errorf("state %s: set aside: %w", e.Path, unwrapPath(err))
	}
	e.MovedTo = aside
	return nil
}

// Load reads the state file. A missing file is an empty state. A corrupt
// one is reported as a *CorruptError with an empty state; the caller sets
// it aside when it is going to write a new one.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return New(), &CorruptError{Path: path, Err: unwrapPath(err)}
	}
	f := New()
	err = json.Unmarshal(data, f)
	if err == nil && f.FormatVersion != FormatVersion {
		err = fmt.Errorf("format_version %d, want %d", f.FormatVersion, FormatVersion)
	}
	if err == nil {
		err = f.validate()
	}
	if err != nil {
		return New(), &CorruptError{Path: path, Err: err}
	}
	if f.Sets == nil {
		f.Sets = map[string]*Set{}
	}
	return f, nil
}

func (f *File) validate() error {
	for name, s := range f.Sets {
		if s == nil {
			return fmt.Errorf("set %s: null", name)
		}
		for _, a := range s.Addresses {
			if !a.Prefix.IsValid() {
				return fmt.Errorf("set %s: invalid prefix", name)
			}
		}
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Save writes the state atomically, creating the directory if needed.
func (f *File) Save(path string) error {
	for _, s := range f.Sets {
		sort.Slice(s.Addresses, func(i, j int) bool { return comparePrefix(s.Addresses[i].Prefix, s.Addresses[j].Prefix) < 0 })
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("state %s: %w", path, unwrapPath(err))
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("state %s: %w", path, unwrapPath(err))
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
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
// Addresses past their window are forgotten.
//
// A set with no history (a lost, corrupt or fresh state) takes held, what
// the sinks hold for it under our ownership, as seen now: a cold start must
// never remove an address DNS may still serve. A set recovering from a
// freeze gets back the time it spent frozen: its sources could not say
// anything, so that time does not count against what it remembers.
func (f *File) Observe(set string, seen []Seen, held []netip.Prefix, now time.Time, w Window) []netip.Prefix {
	s := f.set(set, now)
	if len(s.Addresses) == 0 {
		for _, p := range held {
			if p.IsValid() {
				s.Addresses = append(s.Addresses, Address{Prefix: p.Masked(), FirstSeen: now, LastSeen: now})
			}
		}
	}
	if !s.StaleSince.IsZero() {
		for i := range s.Addresses {
			a := &s.Addresses[i]
			// Age before the freeze counts; the freeze itself does not.
			a.LastSeen = now.Add(-max(s.StaleSince.Sub(a.LastSeen), 0))
		}
	}
	byPrefix := make(map[netip.Prefix]*Address, len(s.Addresses))
	for i := range s.Addresses {
		a := &s.Addresses[i]
		if old, ok := byPrefix[a.Prefix]; !ok || old.LastSeen.Before(a.LastSeen) {
			byPrefix[a.Prefix] = a
		}
	}
	ttl := make(map[netip.Prefix]time.Duration, len(seen))
	for _, a := range seen {
		p := a.Prefix.Masked()
		ttl[p] = max(ttl[p], a.TTL)
	}
	var kept []Address
	for p, t := range ttl {
		na := Address{Prefix: p, FirstSeen: now, LastSeen: now, TTLSeconds: int64(t / time.Second)}
		if old, ok := byPrefix[p]; ok {
			na.FirstSeen = old.FirstSeen
		}
		kept = append(kept, na)
	}
	var retained []netip.Prefix
	for p, a := range byPrefix {
		if _, ok := ttl[p]; ok {
			continue
		}
		if now.Sub(a.LastSeen) < w.keep(a.TTLSeconds) {
			kept = append(kept, *a)
			retained = append(retained, p)
		}
	}
	s.Addresses = kept
	s.LastSuccess = now
	s.StaleSince = time.Time{}
	sort.Slice(retained, func(i, j int) bool { return comparePrefix(retained[i], retained[j]) < 0 })
	return retained
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
// the window is measured at StaleSince, since frozen time does not count.
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
	for _, a := range s.Addresses {
		if at.Sub(a.LastSeen) < w.keep(a.TTLSeconds) {
			out = append(out, a.Prefix)
		}
	}
	sort.Slice(out, func(i, j int) bool { return comparePrefix(out[i], out[j]) < 0 })
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
// as the future is far.
func (s *Set) clamp(now time.Time) {
	for i := range s.Addresses {
		a := &s.Addresses[i]
		a.LastSeen = earliest(a.LastSeen, now)
		a.FirstSeen = earliest(a.FirstSeen, a.LastSeen)
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
