package sink

import (
	"regexp"
	"strings"
)

// MarkerPrefix starts every comment or description we write, so ownership
// can be read back from the target itself.
const MarkerPrefix = "pdsafelist:"

var setName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// Marker labels an entry we create. The owner id lets two installations
// share one target without touching each other's entries.
func Marker(owner, set string) string {
	if owner == "" {
		return MarkerPrefix + set
	}
	return MarkerPrefix + owner + ":" + set
}

// ParseMarker returns the set a marker names when it was written by this
// owner. Anything else, including another owner's marker, is not ours.
func ParseMarker(owner, s string) (set string, ok bool) {
	rest, found := strings.CutPrefix(s, MarkerPrefix)
	if !found {
		return "", false
	}
	if owner != "" {
		if rest, found = strings.CutPrefix(rest, owner+":"); !found {
			return "", false
		}
	}
	if !setName.MatchString(rest) {
		return "", false
	}
	return rest, true
}

// UnreadableMarker reports whether s is this owner's marker with a set
// that no longer reads as one (edited by hand): the entry is ours, its
// set unknown, and the plan counts it as held by every routed set. A
// string that could be another owner's marker never is.
func UnreadableMarker(owner, s string) bool {
	rest, found := strings.CutPrefix(s, MarkerPrefix)
	if !found {
		return false
	}
	if owner != "" {
		if rest, found = strings.CutPrefix(rest, owner+":"); !found {
			return false
		}
	}
	if setName.MatchString(rest) {
		return false
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && setName.MatchString(rest[i+1:]) {
		return false // OWNER:SET of another installation
	}
	return true
}
