package sink

import (
	"fmt"

	"github.com/pdsafelist/pdsafelist/pkg/config/yamlcheck"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// The checks below hold at every sink's door, whatever config validation
// did first: a string that reaches a file, a rule comment or an API field
// never ends a line there (issue 20 item 4).

// CheckText refuses value, the option key of the sink from origin, when
// it holds a control character, a line separator or invalid UTF-8. An
// empty origin leaves it to the caller to name the sink.
func CheckText(origin, key, value string) error {
	if err := oneline.Check(value); err != nil {
		err = fmt.Errorf("%s %q: %w; want one line of printable text", key, value, err)
		if origin != "" {
			err = fmt.Errorf("%s: %w", origin, err)
		}
		return err
	}
	return nil
}

// CheckOptions applies CheckText to every string in a sink's options
// struct, named by its yaml key: fields, tags, list items and nested
// structs, so an option added later is checked too.
func CheckOptions(origin string, opts any) error {
	return yamlcheck.Strings(opts, func(key, s string) error { return CheckText(origin, key, s) })
}

// CheckPlan refuses a plan that would write an entry of a set whose name
// config would not accept: the name goes into markers, set names, manifests
// and templates. Entries come sorted by set, so each name is matched once.
func CheckPlan(p plan.SinkPlan) error {
	for _, es := range [][]plan.Entry{p.Add, p.Keep} {
		last := ""
		for i, e := range es {
			if i > 0 && e.Set == last {
				continue
			}
			last = e.Set
			if !plan.ValidSetName(e.Set) {
				return fmt.Errorf("set %q: not a set name config accepts; refusing to write it", e.Set)
			}
		}
	}
	return nil
}
