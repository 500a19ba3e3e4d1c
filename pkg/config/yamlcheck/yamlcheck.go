// Package yamlcheck decodes YAML strictly and explains mistakes in the
// user's terms: the key, the line in their file, and the valid keys or the
// expected form, instead of yaml's "!!int" and Go type names.
package yamlcheck

import (
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// Error is one mistake in a YAML document.
type Error struct {
	// File is the config file, empty when the node was not read from one
	// (a --sink flag); Line is 0 then too.
	File string
	Line int
	// Key is the dotted path of the offending key, e.g. "dns.query_timeout".
	Key string
	Msg string
	// Valid lists the keys allowed where Key was found, for an unknown
	// key; Of says whose keys they are (e.g. "type http").
	Valid []string
	Of    string
}

func (e *Error) Error() string {
	var where string
	switch {
	case e.File != "" && e.Line > 0:
		where = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.Line > 0:
		where = fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Valid != nil {
		of := ""
		if e.Of != "" {
			of = " for " + e.Of
		}
		return fmt.Sprintf("%sunknown key %q%s (valid keys: %s)", where, e.Key, of, strings.Join(e.Valid, ", "))
	}
	if e.Key == "" {
		return where + e.Msg
	}
	return fmt.Sprintf("%s%s: %s", where, e.Key, e.Msg)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	nodeType     = reflect.TypeFor[yaml.Node]()
	unmarshaler  = reflect.TypeFor[yaml.Unmarshaler]()
	textual      = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Decode checks n against v's type, then decodes it into v. file names the
// document for error messages ("" when it came from a flag).
func Decode(n *yaml.Node, v any, file string) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	c := checker{file: file}
	c.check(n, reflect.TypeOf(v).Elem(), "")
	if c.err != nil {
		return c.err
	}
	if err := n.Decode(v); err != nil {
		// The check above should catch every shape yaml refuses; keep
		// yaml's own words as a last resort, on one line.
		return &Error{File: file, Line: n.Line, Msg: oneline.Error(err)}
	}
	return nil
}

// Keys lists the yaml keys of a struct type, in field order.
func Keys(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for _, f := range fields(t) {
		out = append(out, f.name)
	}
	return out
}

type field struct {
	name  string
	typ   reflect.Type
	index []int
}

// fields lists a struct's keys as yaml sees them, inline structs flattened.
func fields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct:
			for _, in := range fields(f.Type) {
				in.index = append([]int{i}, in.index...)
				out = append(out, in)
			}
		case name == "":
			out = append(out, field{strings.ToLower(f.Name), f.Type, []int{i}})
		default:
			out = append(out, field{name, f.Type, []int{i}})
		}
	}
	return out
}

type checker struct {
	file string
	err  *Error
}

func (c *checker) fail(n *yaml.Node, key, format string, args ...any) {
	if c.err == nil {
		c.err = &Error{File: c.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
}

func join(key, sub string) string {
	if key == "" {
		return sub
	}
	return key + "." + sub
}

func (c *checker) check(n *yaml.Node, t reflect.Type, key string) {
	if c.err != nil {
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if t == nodeType || reflect.PointerTo(t).Implements(unmarshaler) {
		// The type decodes itself and reports its own mistakes.
		return
	}
	if reflect.PointerTo(t).Implements(textual) {
		// So does a value written as one scalar.
		if n.Kind != yaml.ScalarNode {
			c.fail(n, key, "want a single value, got %s", show(n))
		} else if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			c.fail(n, key, "%s", oneline.Error(err))
		}
		return
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			c.fail(n, key, "want a duration such as 30s or 5m, got %s", show(n))
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			c.fail(n, key, "want a duration such as 30s or 5m, got %s", show(n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.fail(n, key, "want a mapping with keys %s, got %s", strings.Join(Keys(t), ", "), show(n))
			return
		}
		byName := map[string]reflect.Type{}
		for _, f := range fields(t) {
			byName[f.name] = f.typ
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := byName[k.Value]
			if !ok {
				c.fail(k, join(key, k.Value), "unknown key")
				c.err.Valid = Keys(t)
				return
			}
			c.check(v, ft, join(key, k.Value))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.fail(n, key, "want a mapping, got %s", show(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.check(n.Content[i+1], t.Elem(), join(key, n.Content[i].Value))
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			c.fail(n, key, "want a list such as [a, b], got %s", show(n))
			return
		}
		for i, item := range n.Content {
			c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			if t.Kind() >= reflect.Uint {
				c.fail(n, key, "want a whole number from 0 to %d, got %s", uint64(1)<<(t.Bits()-1)*2-1, show(n))
			} else {
				c.fail(n, key, "want a whole number, got %s", show(n))
			}
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Decode(new(bool)) != nil {
			c.fail(n, key, "want true or false, got %s", show(n))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			c.fail(n, key, "want a single value, got %s", show(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			c.fail(n, key, "want a number, got %s", show(n))
		}
	}
}

// show names what the user wrote: the value itself, or its shape.
func show(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// Strings calls fn with every string v holds and the key it sits under as
// yaml sees it: struct fields (inline ones flattened, nested ones dotted),
// list items ("key[1]"), map keys ("key key") and values ("key.name"). It
// stops at fn's first error. A check over it covers options added later.
func Strings(v any, fn func(key, s string) error) error {
	return walkStrings("", reflect.ValueOf(v), fn)
}

func walkStrings(key string, v reflect.Value, fn func(key, s string) error) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return walkStrings(key, v.Elem(), fn)
	case reflect.String:
		return fn(key, v.String())
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := walkStrings(fmt.Sprintf("%s[%d]", key, i), v.Index(i), fn); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if err := walkStrings(key+" key", it.Key(), fn); err != nil {
				return err
			}
			if err := walkStrings(fmt.Sprintf("%s.%v", key, it.Key()), it.Value(), fn); err != nil {
				return err
			}
		}
	case reflect.Struct:
		for _, f := range fields(v.Type()) {
			name := f.name
			if key != "" {
				name = key + "." + name
			}
			if err := walkStrings(name, v.FieldByIndex(f.index), fn); err != nil {
				return err
			}
		}
	}
	return nil
}
