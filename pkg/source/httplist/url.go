package httplist

import (
	"fmt"
	"net/url"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// CheckURL insists on HTTPS: a list fetched in clear text could be swapped
// by anyone on the path.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %s", raw, oneline.Error(err))
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("url %q: want an https:// URL", raw)
	}
	return nil
}
