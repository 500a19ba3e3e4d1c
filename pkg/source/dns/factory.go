package dns

import "github.com/pdsafelist/pdsafelist/pkg/source"

// Spec is the dns source's keys in a set's sources list.
type Spec struct {
	// Name is the host name whose A and AAAA records are the set's
	// addresses; CNAMEs are followed.
	Name string `yaml:"name"`
}

// Factory registers the dns source.
var Factory = source.Factory{
	Help:    "dns     name: the A and AAAA records of a host name, with their TTLs",
	Options: func() any { return Spec{} },
	New: func(spec source.Spec, env source.Env) (source.Source, error) {
		var o Spec
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if o.Name == "" {
			return nil, source.Errorf(spec, "missing name")
		}
		r, err := env.Resolver()
		if err != nil {
			return nil, err
		}
		return r.Source(o.Name), nil
	},
}
