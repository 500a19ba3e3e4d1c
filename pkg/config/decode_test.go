package config

import (
	"strings"
	"testing"
	"time"
)

// A file decodes onto the defaults: a key it leaves out keeps the default,
// a key it sets keeps its value even when that value is zero.
func TestFileDecodesOntoDefaults(t *testing.T) {
	load := func(t *testing.T, doc string) Settings {
		t.Helper()
		f, err := Parse("t.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		s := Defaults().Apply(f)
		return s
	}
	s := load(t, "grace: 0s\n")
	if s.Grace != 0 {
		t.Errorf("grace: 0s in the file gave %s, want 0", s.Grace)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("grace 0 refused: %v", err)
	}
	s = load(t, "dns:\n  attempts: 5\n")
	if s.DNS.Attempts != 5 || s.DNS.QueryTimeout != Defaults().DNS.QueryTimeout || s.DNS.MaxCNAMEDepth != Defaults().DNS.MaxCNAMEDepth {
		t.Errorf("dns.attempts alone: got %+v, want the other dns defaults kept", s.DNS)
	}
	if s.Grace != time.Hour || s.Guards != Defaults().Guards || s.Region != "us" {
		t.Errorf("unset keys lost their defaults: grace %s, max_delete %s, region %q", s.Grace, s.Guards.MaxDelete, s.Region)
	}
	s = load(t, "http:\n  max_redirects: 0\n")
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "max_redirects 0") {
		t.Errorf("max_redirects: 0 is not silently the default: got %v", err)
	}
	s = load(t, "")
	if s.Grace != time.Hour || s.DNS != Defaults().DNS {
		t.Errorf("empty file: got grace %s dns %+v, want the defaults", s.Grace, s.DNS)
	}
}
