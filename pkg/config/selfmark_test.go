package config

import (
	"strings"
	"testing"
)

func TestSelfMarkValidated(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "0": true, "0x64/0xff": true, "0x100/0xff": false, "mark": false} {
		s := Defaults()
		s.SelfMark = in
		err := s.Validate()
		if (err == nil) != ok {
			t.Errorf("self_mark %q: %v, want ok=%v", in, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "self_mark") {
			t.Errorf("self_mark %q: error does not name the key: %v", in, err)
		}
	}
	f, err := Parse("test.yaml", []byte("self_mark: 0x64/0xff\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := Defaults().Apply(f); s.SelfMark != "0x64/0xff" {
		t.Errorf("Apply: %q", s.SelfMark)
	}
}
