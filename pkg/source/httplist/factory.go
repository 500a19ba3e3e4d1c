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
}

// Factory registers the http source.
var Factory = source.Factory{
	Help:    "http    url, format (json|text, default json), jq, max_bytes: a list fetched over HTTPS",
	Options: func() any { return Spec{} },
	New: func(spec source.Spec, env source.Env) (source.Source, error) {
		var o Spec
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if err := CheckURL(o.URL); err != nil {
			return nil, source.Errorf(spec, "%v", err)
		}
		p, max, err := o.Parser(env.MaxBytes)
		if err != nil {
			return nil, source.Errorf(spec, "%v", err)
		}
		client, err := env.HTTPClient()
		if err != nil {
			return nil, err
		}
		return New(o.URL, client, Options{MaxBytes: max, Parser: p, Logger: env.Logger}), nil
	},
}
