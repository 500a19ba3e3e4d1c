package httplist

import (
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// Spec is the http source's keys in a set's sources list.
type Spec struct {
	// URL of the list; https only, redirects followed up to
	// http.max_redirects, all HTTPS.
	URL                string `yaml:"url"`
	listformat.Options `yaml:",inline"`
	Fetching           `yaml:",inline"`
}

// Factory registers the http source.
var Factory = source.Factory{
	Help:    "http    url, format (json|text, default json), jq, max_bytes, min_interval, token, backoff_after, max_backoff: a list fetched over HTTPS",
	Options: func() any { return Spec{Fetching: DefaultFetching()} },
	New: func(spec source.Spec, env source.Env) (source.Source, error) {
		var o Spec
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		return Build(spec, env, o)
	},
}

// Build makes the list o describes; the vendor presets build theirs
// through it too, so a preset's list is fetched exactly as an http one.
func Build(spec source.Spec, env source.Env, o Spec) (source.Source, error) {
	if err := CheckURL(o.URL); err != nil {
		return nil, source.Errorf(spec, "%v", err)
	}
	p, max, err := o.Parser(env.MaxBytes)
	if err != nil {
		return nil, source.Errorf(spec, "%v", err)
	}
	if err := o.Fetching.Check(); err != nil {
		return nil, source.Errorf(spec, "%v", err)
	}
	if o.Token != "" && p.Format() != "json" {
		return nil, source.Errorf(spec, "token applies to format json, not %s", p.Format())
	}
	client, err := env.HTTPClient()
	if err != nil {
		return nil, err
	}
	rem := Remember{Fetching: o.Fetching, Memory: env.Fetches, Key: Key(o.URL, p.Format(), o.JQ), Now: env.Now}
	return New(o.URL, client, Options{MaxBytes: max, Parser: p, Logger: env.Logger, Remember: rem, Shared: env.Shared}), nil
}
