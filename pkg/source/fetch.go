package source

import (
	"net/netip"
	"time"
)

// FetchRecord is what a list source remembers of one list between runs:
// the validators and change token of its last good answer, that answer,
// and its failures since.
type FetchRecord struct {
	// ETag and LastModified are the validators the last good answer came
	// with; a 304 to them means Answer still stands.
	ETag, LastModified string
	// Token is the change token (syncToken, createDate, ...) the answer
	// carried; "" when the list has none.
	Token string
	// Answer is the last good answer, sorted; nil when there is none.
	Answer []netip.Prefix
	// Answered is when Answer was last fetched or confirmed by a 304.
	Answered time.Time
	// Failures counts failed fetches since the last good answer, and
	// FailedAt is when the latest failed.
	Failures int
	FailedAt time.Time
}

// FetchMemory keeps FetchRecords by key across runs (the state keeps
// them). Sources of one run call it at once, so it must be safe for
// concurrent use. What it returns was read back from a file and is
// checked by the store, not trusted by its shape alone.
type FetchMemory interface {
	Recall(key string) (FetchRecord, bool)
	Remember(key string, r FetchRecord)
}
