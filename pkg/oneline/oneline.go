// Package oneline folds text onto one line for error messages and logs,
// where a stray line break would split one message in two. It imports
// only the standard library, so every package can use it.
package oneline

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String folds s onto one line. Each line break (any of \n \r \v \f,
// U+0085, U+2028, U+2029) with the space around it becomes "; ", because
// multi-line messages (yaml's, jq's, the SDKs') list one problem a line;
// after a line that ends in ":", ";", "," or "." it becomes a single space
// instead, so "errors:\n  line 3: ..." reads "errors: line 3: ...". Blank
// lines are dropped, and every other run of space becomes one space.
func String(s string) string {
	var b strings.Builder
	for _, line := range strings.FieldsFunc(s, isBreak) {
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		if b.Len() > 0 {
			if strings.ContainsAny(b.String()[b.Len()-1:], ":;,.") {
				b.WriteByte(' ')
			} else {
				b.WriteString("; ")
			}
		}
		for i, w := range words {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(w)
		}
	}
	return b.String()
}

// Error is String of err's message; nil gives "".
func Error(err error) string {
	if err == nil {
		return ""
	}
	return String(err.Error())
}

func isBreak(r rune) bool {
	switch r {
	case '\n', '\r', '\v', '\f', '\u0085', '\u2028', '\u2029':
		return true
	}
	return false
}

// Check returns an error unless s is one line of printable text: a control
// character (C0, DEL, C1), a line or paragraph separator or invalid UTF-8
// can end a line in whatever reads s next, and start one of an attacker's.
// The error names the character, not s, so the caller names the key and
// quotes the value.
func Check(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			return fmt.Errorf("control character %U at byte %d", r, i)
		}
	}
	return nil
}
