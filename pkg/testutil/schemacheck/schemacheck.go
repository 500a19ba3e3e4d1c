// Package schemacheck validates JSON documents against the published
// schemas in docs/schema, with formats (date-time) asserted.
package schemacheck

import (
	"bytes"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pdsafelist/pdsafelist/docs/schema"
)

var (
	once     sync.Once
	compiled map[string]*jsonschema.Schema
	loadErr  error
)

func load() {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	names, err := fs.Glob(schema.FS, "*.schema.json")
	if err != nil {
		loadErr = err
		return
	}
	for _, n := range names {
		data, err := schema.FS.ReadFile(n)
		if err != nil {
			loadErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			loadErr = fmt.Errorf("%s: %w", n, err)
			return
		}
		if err := c.AddResource(schema.Base+n, doc); err != nil {
			loadErr = fmt.Errorf("%s: %w", n, err)
			return
		}
	}
	compiled = map[string]*jsonschema.Schema{}
	for _, n := range names {
		s, err := c.Compile(schema.Base + n)
		if err != nil {
			loadErr = fmt.Errorf("%s: %w", n, err)
			return
		}
		compiled[n] = s
	}
}

// Validate checks data against the schema file name (schema.Resolve,
// schema.Sync or schema.Plan).
func Validate(name string, data []byte) error {
	once.Do(load)
	if loadErr != nil {
		return fmt.Errorf("load schemas: %w", loadErr)
	}
	s, ok := compiled[name]
	if !ok {
		return fmt.Errorf("no schema %s", name)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(inst)
}

// Assert fails t when data does not validate against the schema name.
func Assert(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := Validate(name, data); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}
