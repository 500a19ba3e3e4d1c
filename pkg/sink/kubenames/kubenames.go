// Package kubenames checks names and label selectors as the Kubernetes API
// server accepts them, for the sinks that write Kubernetes objects (the
// k8s-networkpolicy sink and the template sink's NetworkPolicy format), so
// a bad option is refused at open rather than by the server or kubectl.
package kubenames

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// DNSLabel is an RFC 1123 label: a namespace, or a NetworkPolicy name
	// as the template writes it.
	DNSLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// Subdomain is an RFC 1123 subdomain (at most 253 characters, checked
	// apart): an object name.
	Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

	// Label keys and values (prefix/name=value).
	labelKey   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// ParseSelector reads "KEY=VALUE[,KEY=VALUE]" into match labels; empty is
// nil, which selects every pod.
func ParseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || !labelKey.MatchString(k) || !labelValue.MatchString(v) {
			return nil, fmt.Errorf("%q: want key=value labels separated by commas", kv)
		}
		out[k] = v
	}
	return out, nil
}
