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
