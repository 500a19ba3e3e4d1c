package oneline

import (
	"errors"
	"strings"
	"testing"
	"unicode"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"  \n\t ":                "",
		"plain":                  "plain",
		"  two   spaces\there  ": "two spaces here",
		// yaml lists each problem on its own line after a colon.
		"yaml: unmarshal errors:\n  line 3: field x not found\n  line 5: field y not found": "yaml: unmarshal errors: line 3: field x not found; line 5: field y not found",
		"first\nsecond":                      "first; second",
		"first\r\nsecond\r\n":                "first; second",
		"a\n\n\n b":                          "a; b",
		"ends in a period.\nnext":            "ends in a period. next",
		"list,\nnext":                        "list, next",
		"already;\nnext":                     "already; next",
		"page\fbreak\vtab\u2028sep\u0085nel": "page; break; tab; sep; nel",
		"non\u00a0breaking":                  "non breaking",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestError(t *testing.T) {
	if got := Error(errors.New("bad:\n  worse")); got != "bad: worse" {
		t.Errorf("got %q", got)
	}
	if got := Error(nil); got != "" {
		t.Errorf("nil: %q", got)
	}
}

// Whatever the input, the result is one line without runs of spaces or
// edges of space, and formatting it again changes nothing.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "a\nb", "x:\n y", " \r\n\t", "a\u2028b", "k: v;\n\n;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := String(s)
		if strings.ContainsFunc(got, func(r rune) bool { return isBreak(r) || (unicode.IsSpace(r) && r != ' ') }) {
			t.Fatalf("String(%q) = %q keeps a line break or odd space", s, got)
		}
		if strings.Contains(got, "  ") || strings.TrimSpace(got) != got {
			t.Fatalf("String(%q) = %q keeps a run or edge of space", s, got)
		}
		if again := String(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}

func TestCheck(t *testing.T) {
	for _, ok := range []string{"", "prod", "prod-1 eu/(a)", "é ü \uFFFD", "tab-free; quotes \"'`"} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q) = %v, want nil", ok, err)
		}
	}
	for in, want := range map[string]string{
		"x\nallow all;": "U+000A at byte 1",
		"\r":            "U+000D at byte 0",
		"a\x00":         "U+0000 at byte 1",
		"ab\x1b[31m":    "U+001B at byte 2",
		"a\tb":          "U+0009 at byte 1",
		"del\x7f":       "U+007F at byte 3",
		"nel\u0085":     "U+0085 at byte 3",
		"ls\u2028":      "U+2028 at byte 2",
		"ps\u2029":      "U+2029 at byte 2",
		"bad\xffutf8":   "invalid UTF-8 at byte 3",
	} {
		err := Check(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want %q", in, err, want)
		}
	}
}
