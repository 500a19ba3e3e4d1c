package kubenames

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSelector(t *testing.T) {
	got, err := ParseSelector(" app=payments-api , example.com/tier=web,empty=")
	want := map[string]string{"app": "payments-api", "example.com/tier": "web", "empty": ""}
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	if got, err := ParseSelector("  "); got != nil || err != nil {
		t.Errorf("blank: %v, %v; want nil (every pod)", got, err)
	}
	for _, bad := range []string{"app", "app=a b", "-app=x", "app=x\ny", "a=b,c"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNames(t *testing.T) {
	for s, want := range map[string]bool{"payments": true, "pay-ments": true, "Payments": false, "-x": false, "a.b": false} {
		if DNSLabel.MatchString(s) != want {
			t.Errorf("DNSLabel(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{"pagerduty.webhooks": true, "a..b": false, "A": false} {
		if Subdomain.MatchString(s) != want {
			t.Errorf("Subdomain(%q) = %v", s, !want)
		}
	}
}
