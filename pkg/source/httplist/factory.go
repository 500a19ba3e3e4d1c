package httplist

import (
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// Spec is the http source's keys in a set's sources list.
type Spec struct {
	URL    string `yaml:"url"`
	Format string `yaml:"format"`
	JQ     string `yaml:"jq"`
	// MaxBytes overrides http.max_bytes for one large list, such as AWS's
	// ip-ranges.json.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Factory registers the http source.
var Factory = source.Factory{
	Help: "http    url, format (json|text, default json), jq, max_bytes: a list fetched over HTTPS",
	New: func(spec source.Spec, env source.Env) (source.Source, error) {
		var o Spec
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if err := config.CheckURL(o.URL); err != nil {
			return nil, source.Errorf(spec, "%v", err)
		}
		p, err := listformat.New(o.Format, o.JQ)
		if err != nil {
			return nil, source.Errorf(spec, "%v", err)
		}
		if o.MaxBytes < 0 {
			return nil, source.Errorf(spec, "max_bytes %d is negative", o.MaxBytes)
		}
		if o.MaxBytes == 0 {
			o.MaxBytes = env.MaxBytes
		}
		client, err := env.HTTPClient()
		if err != nil {
			return nil, err
		}
		return New(o.URL, client, Options{MaxBytes: o.MaxBytes, Parser: p, Logger: env.Logger}), nil
	},
}
