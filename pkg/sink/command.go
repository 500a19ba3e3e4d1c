package sink

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Command is a program a sink runs, such as a template sink's check= and
// reload=. In a config file it is a list of arguments (["nginx", "-t"]),
// so an argument may hold spaces; the string form, also the only form a
// --sink flag has, is split on white space with no quoting.
type Command []string

// UnmarshalYAML takes a string or a list of strings.
func (c *Command) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			*c = nil
			return nil
		}
		*c = strings.Fields(n.Value)
		return nil
	case yaml.SequenceNode:
		out := make(Command, 0, len(n.Content))
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.ShortTag() == "!!null" {
				return fmt.Errorf("line %d: argument %d of the command: want a string", item.Line, i+1)
			}
			out = append(out, item.Value)
		}
		if len(out) > 0 && strings.TrimSpace(out[0]) == "" {
			return fmt.Errorf("line %d: the command's first argument (the program) is empty", n.Line)
		}
		*c = out
		return nil
	}
	return fmt.Errorf("line %d: want a command as a string or a list of arguments", n.Line)
}

// Has reports whether an argument holds s.
func (c Command) Has(s string) bool {
	for _, a := range c {
		if strings.Contains(a, s) {
			return true
		}
	}
	return false
}

// Argv is the command with every "{}" in its arguments replaced by path.
func (c Command) Argv(path string) []string {
	out := make([]string, len(c))
	for i, a := range c {
		out[i] = strings.ReplaceAll(a, "{}", path)
	}
	return out
}

// String is the command as one line, for messages.
func (c Command) String() string { return strings.Join(c, " ") }
