package sink

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Digest is the SHA-256 of what a spec asks for: its type, its sets and
// its options, canonically. The same sink from --sink or from the config
// file has one digest; any other option, however small, another. A saved
// plan records it instead of the options, so the run that applies the
// plan opens its sinks from its own config and only checks they match.
func (s Spec) Digest() string {
	canon := struct {
		Type    string   `json:"type"`
		Sets    []string `json:"sets"`
		Options any      `json:"options"`
	}{Type: s.Type, Sets: s.Sets, Options: canonical(&s.Options)}
	// Routing does not depend on the order the sets are named in.
	canon.Sets = slices.Sorted(slices.Values(s.Sets))
	if canon.Sets == nil {
		canon.Sets = []string{}
	}
	data, err := json.Marshal(canon)
	if err != nil {
		// Only strings, slices and pairs reach Marshal.
		panic(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// canonical is n as plain values: scalars by their text (a flag's "true"
// and a file's true are one option), mappings as key-sorted pairs,
// aliases followed.
func canonical(n *yaml.Node) any {
	switch n.Kind {
	case 0:
		// A spec built in code has no options node: no options.
		return [][2]any{}
	case yaml.DocumentNode:
		if len(n.Content) == 1 {
			return canonical(n.Content[0])
		}
		return nil
	case yaml.AliasNode:
		return canonical(n.Alias)
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			out[i] = canonical(c)
		}
		return out
	case yaml.MappingNode:
		pairs := make([][2]any, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			pairs = append(pairs, [2]any{canonical(n.Content[i]), canonical(n.Content[i+1])})
		}
		slices.SortStableFunc(pairs, func(a, b [2]any) int {
			ka, _ := json.Marshal(a[0])
			kb, _ := json.Marshal(b[0])
			return slices.Compare(ka, kb)
		})
		return pairs
	case yaml.ScalarNode:
		return n.Value
	}
	return nil
}
