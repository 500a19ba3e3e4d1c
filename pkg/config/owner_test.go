package config

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
)

// owner_id goes into every marker the sinks write (rule comments, EC2
// descriptions, file manifests, tags), so a value that could end a line
// there is refused where the config is read (issue 20 item 4).
func TestOwnerIDValidated(t *testing.T) {
	for in, ok := range map[string]bool{
		"":                      true,
		"prod":                  true,
		"prod-1.eu_A":           true,
		strings.Repeat("o", 64): true,
		"x\nallow all;\n#":      false,
		"prod\r":                false,
		"prod\x00":              false,
		"prod\x1b[2J":           false,
		"prod\x7f":              false,
		"prod\u2028allow":       false,
		"prod eu":               false,
		"prod<eu>":              false,
		"prod:eu":               false,
		strings.Repeat("o", 65): false,
	} {
		err := func() error {
			f, err := Parse("test.yaml", []byte("owner_id: "+quoteYAML(in)+"\n"))
			if err != nil {
				return err
			}
			s := Defaults().Apply(f)
			if s.OwnerID != in {
				t.Fatalf("owner_id %q read as %q", in, s.OwnerID)
			}
			return s.Validate()
		}()
		if (err == nil) != ok {
			t.Errorf("owner_id %q: %v, want ok=%v", in, err, ok)
			continue
		}
		if err == nil {
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "owner_id") || strings.ContainsFunc(msg, unicode.IsControl) || strings.ContainsRune(msg, '\u2028') {
			t.Errorf("owner_id %q: want one printable line naming the key, got %q", in, msg)
		}
	}
}

// quoteYAML writes s as a double-quoted YAML scalar, escapes included.
func quoteYAML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
