package httplist

import (
	"net/http"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// The fetching keys are checked when the config is read: one line naming
// the source and the key.
func TestFetchingKeysChecked(t *testing.T) {
	env := source.Env{HTTPClient: func() (*http.Client, error) { return http.DefaultClient, nil }}
	for _, tt := range []struct{ opts, want string }{
		{`{url: "https://a.example.com/l", min_interval: -1m}`, "min_interval -1m0s is negative"},
		{`{url: "https://a.example.com/l", backoff_after: -2}`, "backoff_after -2 is negative"},
		{`{url: "https://a.example.com/l", max_backoff: -1s}`, "max_backoff -1s is negative"},
		{`{url: "https://a.example.com/l", token: ".syncToken"}`, `token ".syncToken": want a top-level key`},
		{`{url: "https://a.example.com/l", format: text, token: syncToken}`, "token applies to format json, not text"},
		{`{url: "https://a.example.com/l", min_interval: often}`, "min_interval"},
	} {
		var sp source.Spec
		if err := yaml.Unmarshal([]byte(tt.opts), &sp.Options); err != nil {
			t.Fatal(err)
		}
		sp.Options = *sp.Options.Content[0]
		sp.Type, sp.Origin = "http", "test"
		_, err := Factory.New(sp, env)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "test: ") {
			t.Errorf("%s: %v, want one line containing %q", tt.opts, err, tt.want)
		}
	}
	var sp source.Spec
	if err := yaml.Unmarshal([]byte(`{type: http, url: "https://a.example.com/l", token: syncToken, min_interval: 1h, backoff_after: 5, max_backoff: 6h}`), &sp); err != nil {
		t.Fatal(err)
	}
	sp.Origin = "test"
	if _, err := Factory.New(sp, env); err != nil {
		t.Fatal(err)
	}
}
