package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// FetchFileName, next to the state file, is what each published list
// answered last (source.FetchRecord): kept apart from the sets' memory, so
// the state file's layout and its readers are not touched by it.
const FetchFileName = "state.fetch.json"

// FetchPath is the fetch file of the state directory dir.
func FetchPath(dir string) string { return filepath.Join(dir, FetchFileName) }

// Bounds on what the fetch file may hold: it is read back as untrusted as
// any answer. A list record past them makes the whole file corrupt.
const (
	fetchFormat     = 1
	maxFetchFile    = 64 << 20
	maxFetchRecords = 10_000
	maxFetchKey     = 4096
	// maxFetchAnswer is listformat.MaxEntries, the most one list yields.
	maxFetchAnswer = 100_000
	maxFetchTotal  = 1_000_000
	maxFetchText   = 256
	maxFailures    = 1 << 20
	// fetchForget drops the record of a list no run asked about for this
	// long (a source removed from the config).
	fetchForget = 30 * 24 * time.Hour
)

// Fetches is the memory of every published list, safe for the concurrent
// use of one run's sources. It implements source.FetchMemory.
type Fetches struct {
	mu      sync.Mutex
	records map[string]fetchRecord
	changed bool
}

var _ source.FetchMemory = (*Fetches)(nil)

// fetchRecord is a source.FetchRecord with its answer packed: the bytes of
// each address and its prefix length, 5 bytes an IPv4 address where a
// netip.Prefix takes 32. The memory is held for the whole run, and a
// million addresses of lists took 30 MB of it as prefixes.
type fetchRecord struct {
	source.FetchRecord // Answer is nil: it is in answer
	answer             packedPrefixes
}

// packedPrefixes is a sorted answer, packed: the IPv4 prefixes (4 address
// bytes and the length each), then the IPv6 ones (16 and the length), the
// order netip.Addr.Compare gives.
type packedPrefixes struct{ v4, v6 []byte }

func pack(ps []netip.Prefix) packedPrefixes {
	n4 := 0
	for _, p := range ps {
		if p.Addr().Is4() {
			n4++
		}
	}
	var out packedPrefixes
	if n4 > 0 {
		out.v4 = make([]byte, 0, 5*n4)
	}
	if n6 := len(ps) - n4; n6 > 0 {
		out.v6 = make([]byte, 0, 17*n6)
	}
	for _, p := range ps {
		if a := p.Addr(); a.Is4() {
			b := a.As4()
			out.v4 = append(append(out.v4, b[:]...), byte(p.Bits()))
		} else {
			b := a.As16()
			out.v6 = append(append(out.v6, b[:]...), byte(p.Bits()))
		}
	}
	return out
}

func (pp packedPrefixes) len() int { return len(pp.v4)/5 + len(pp.v6)/17 }

// all yields the prefixes in order.
func (pp packedPrefixes) all(yield func(netip.Prefix) bool) {
	for b := pp.v4; len(b) >= 5; b = b[5:] {
		if !yield(netip.PrefixFrom(netip.AddrFrom4([4]byte(b[:4])), int(b[4]))) {
			return
		}
	}
	for b := pp.v6; len(b) >= 17; b = b[17:] {
		if !yield(netip.PrefixFrom(netip.AddrFrom16([16]byte(b[:16])), int(b[16]))) {
			return
		}
	}
}

func (pp packedPrefixes) unpack() []netip.Prefix {
	n := pp.len()
	if n == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, n)
	for p := range pp.all {
		out = append(out, p)
	}
	return out
}

// NewFetches returns an empty memory.
func NewFetches() *Fetches { return &Fetches{records: map[string]fetchRecord{}} }

// Recall returns a copy of key's record.
func (f *Fetches) Recall(key string) (source.FetchRecord, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[key]
	out := r.FetchRecord
	out.Answer = r.answer.unpack()
	return out, ok
}

// Remember keeps r for key; a record the file could not hold back is not
// kept (the list then asks in full next time, which is always safe).
func (f *Fetches) Remember(key string, r source.FetchRecord) {
	// checkRecord masks, sorts and compacts the answer in place, so it
	// works on a copy unless it would change nothing: a list's answer is
	// merged already (source.Merge), and its copy was 32 bytes an address
	// of garbage while every list of a run was fetched.
	if !merged(r.Answer) {
		r.Answer = slices.Clone(r.Answer)
	}
	if err := checkRecord(key, &r); err != nil {
		return
	}
	packed := fetchRecord{FetchRecord: r, answer: pack(r.Answer)}
	packed.Answer = nil
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[key] = packed
	f.changed = true
}

type fetchFileV1 struct {
	FormatVersion int                      `json:"format_version"`
	Lists         map[string]fetchRecordV1 `json:"lists"`
}

type fetchRecordV1 struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Token        string `json:"token,omitempty"`
	Answered     int64  `json:"answered,omitempty"`
	Failures     int    `json:"failures,omitempty"`
	FailedAt     int64  `json:"failed_at,omitempty"`
	// Answer is the prefixes, space-separated, as the state file writes
	// them.
	Answer string `json:"answer,omitempty"`
}

// LoadFetches reads the fetch file. A missing one is an empty memory; one
// that cannot be used is a *CorruptError with an empty memory, which only
// means every list is asked for in full.
func LoadFetches(path string) (*Fetches, error) {
	fh, err := regularfile.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewFetches(), nil
	}
	if err != nil {
		return NewFetches(), &CorruptError{Path: path, Err: unwrapPath(err)}
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFetchFile+1))
	if err == nil && len(data) > maxFetchFile {
		err = fmt.Errorf("larger than %d MiB", maxFetchFile>>20)
	}
	var f *Fetches
	if err == nil {
		f, err = decodeFetches(data)
	}
	if err != nil {
		return NewFetches(), &CorruptError{Path: path, Err: err}
	}
	return f, nil
}

func decodeFetches(data []byte) (*Fetches, error) {
	var v fetchFileV1
	if err := strictUnmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.FormatVersion != fetchFormat {
		return nil, fmt.Errorf("format_version %d, want %d", v.FormatVersion, fetchFormat)
	}
	if len(v.Lists) > maxFetchRecords {
		return nil, fmt.Errorf("%d lists, more than %d", len(v.Lists), maxFetchRecords)
	}
	f := NewFetches()
	total := 0
	for key, rv := range v.Lists {
		r := source.FetchRecord{ETag: rv.ETag, LastModified: rv.LastModified, Token: rv.Token, Failures: rv.Failures}
		var err error
		if r.Answered, err = unixTime(rv.Answered); err != nil {
			return nil, fmt.Errorf("list %q: answered: %w", clipKey(key), err)
		}
		if r.FailedAt, err = unixTime(rv.FailedAt); err != nil {
			return nil, fmt.Errorf("list %q: failed_at: %w", clipKey(key), err)
		}
		n := strings.Count(rv.Answer, " ") + 1
		if total += n; total > maxFetchTotal {
			return nil, fmt.Errorf("more than %d prefixes in all", maxFetchTotal)
		}
		if rv.Answer != "" {
			r.Answer = make([]netip.Prefix, 0, min(n, maxFetchAnswer))
			for tok := range strings.FieldsSeq(rv.Answer) {
				p, err := parsePrefix(tok)
				if err != nil {
					return nil, fmt.Errorf("list %q: %w", clipKey(key), err)
				}
				r.Answer = append(r.Answer, p)
			}
		}
		if err := checkRecord(key, &r); err != nil {
			return nil, err
		}
		packed := fetchRecord{FetchRecord: r, answer: pack(r.Answer)}
		packed.Answer = nil
		f.records[key] = packed
	}
	return f, nil
}

// checkRecord refuses what no list could have answered, and sorts and
// deduplicates the answer.
func checkRecord(key string, r *source.FetchRecord) error {
	if key == "" || len(key) > maxFetchKey || !printable(key) {
		return fmt.Errorf("list %q: not a list key", clipKey(key))
	}
	for name, v := range map[string]string{"etag": r.ETag, "last_modified": r.LastModified, "token": r.Token} {
		if len(v) > maxFetchText || !printable(v) {
			return fmt.Errorf("list %q: %s is not a short printable string", clipKey(key), name)
		}
	}
	if r.LastModified != "" {
		if _, err := http.ParseTime(r.LastModified); err != nil {
			return fmt.Errorf("list %q: last_modified %q is not an HTTP date", clipKey(key), r.LastModified)
		}
	}
	if r.Failures < 0 || r.Failures > maxFailures {
		return fmt.Errorf("list %q: failures %d out of range", clipKey(key), r.Failures)
	}
	if err := inRange(r.Answered, r.FailedAt); err != nil {
		return fmt.Errorf("list %q: %w", clipKey(key), err)
	}
	if len(r.Answer) > maxFetchAnswer {
		return fmt.Errorf("list %q: more than %d prefixes", clipKey(key), maxFetchAnswer)
	}
	for i, p := range r.Answer {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return fmt.Errorf("list %q: invalid prefix", clipKey(key))
		}
		if m := p.Masked(); m != p {
			r.Answer[i] = m
		}
	}
	if !slices.IsSortedFunc(r.Answer, plan.ComparePrefix) {
		slices.SortFunc(r.Answer, plan.ComparePrefix)
	}
	r.Answer = slices.Compact(r.Answer)
	// Validators describe an answer; without one they mean nothing.
	if len(r.Answer) == 0 {
		r.Answer, r.ETag, r.LastModified, r.Token = nil, "", "", ""
	}
	return nil
}

// merged says ps are masked, sorted and without duplicates: what
// checkRecord makes of an answer, which it then leaves as it is.
func merged(ps []netip.Prefix) bool {
	for i, p := range ps {
		if p != p.Masked() || i > 0 && plan.ComparePrefix(ps[i-1], p) >= 0 {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func clipKey(k string) string {
	if len(k) > 80 {
		k = k[:80] + "..."
	}
	return k
}

// Save writes the memory atomically when a run changed it, forgetting
// lists no run asked about for fetchForget.
func (f *Fetches) Save(path string, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, r := range f.records {
		if last := maxTime(r.Answered, r.FailedAt); now.Sub(last) > fetchForget {
			delete(f.records, k)
			f.changed = true
		}
	}
	if !f.changed {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("state %s: %w", path, unwrapPath(err))
	}
	if sameContent(path, f.pieces, -1) {
		return nil
	}
	if err := writeFile(path, f.pieces); err != nil {
		return fmt.Errorf("state %s: %w", path, unwrapPath(err))
	}
	f.changed = false
	return nil
}

// encode is the fetch file's bytes.
func (f *Fetches) encode() ([]byte, error) {
	var b []byte
	for p := range f.pieces {
		b = append(b, p...)
	}
	return b, nil
}

// pieces yields the fetch file one list at a time, the bytes a
// json.Encoder indented by one space writes for fetchFileV1
// (TestFetchPiecesAsEncoder): the answers, most of the file, are never
// all held as text at once.
func (f *Fetches) pieces(yield func(string) bool) {
	str := func(s string) string {
		b, _ := json.Marshal(s) // a string always marshals
		return string(b)
	}
	if len(f.records) == 0 {
		yield("{\n \"format_version\": " + strconv.Itoa(fetchFormat) + ",\n \"lists\": {}\n}\n")
		return
	}
	if !yield("{\n \"format_version\": " + strconv.Itoa(fetchFormat) + ",\n \"lists\": {") {
		return
	}
	for i, k := range slices.Sorted(maps.Keys(f.records)) {
		r := f.records[k]
		var fields []string
		add := func(name, value string) { fields = append(fields, "\n   \""+name+"\": "+value) }
		if r.ETag != "" {
			add("etag", str(r.ETag))
		}
		if r.LastModified != "" {
			add("last_modified", str(r.LastModified))
		}
		if r.Token != "" {
			add("token", str(r.Token))
		}
		if t := unixSeconds(r.Answered); t != 0 {
			add("answered", strconv.FormatInt(t, 10))
		}
		if r.Failures != 0 {
			add("failures", strconv.Itoa(r.Failures))
		}
		if t := unixSeconds(r.FailedAt); t != 0 {
			add("failed_at", strconv.FormatInt(t, 10))
		}
		head := ",\n  "
		if i == 0 {
			head = "\n  "
		}
		head += str(k) + ": {"
		if len(fields) == 0 && r.answer.len() == 0 {
			if !yield(head + "}") {
				return
			}
			continue
		}
		head += strings.Join(fields, ",")
		if r.answer.len() > 0 {
			if len(fields) > 0 {
				head += ","
			}
			// Prefixes are written as they are: digits, hex, dots,
			// colons, slashes and spaces need no escaping.
			var b prefixList
			b.Grow(r.answer.len() * 16)
			for p := range r.answer.all {
				b.add(p)
			}
			if !yield(head+"\n   \"answer\": \"") || !yield(b.String()) || !yield("\"\n  }") {
				return
			}
			continue
		}
		if !yield(head + "\n  }") {
			return
		}
	}
	yield("\n }\n}\n")
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
