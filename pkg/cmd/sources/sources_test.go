package sources_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/source/vendor"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	streams, out, errOut := cmdutil.Test()
	code := root.Execute(context.Background(), root.NewFactory(streams), args)
	return code, out.String(), errOut.String()
}

// pdsafelist sources lists every preset with its filters.
func TestSourcesText(t *testing.T) {
	code, out, errOut := run(t, "sources")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden.Assert(t, "sources.txt", []byte(out))
	for _, name := range vendor.Names() {
		p := vendor.Presets[name]
		if !strings.Contains(out, "\n"+name+": ") && !strings.HasPrefix(out, name+": ") {
			t.Errorf("%s not listed", name)
		}
		for _, f := range p.Filters {
			if !strings.Contains(out, "filter: "+f.Name) {
				t.Errorf("%s: filter %s not listed", name, f.Name)
			}
		}
	}
}

func TestSourcesJSON(t *testing.T) {
	code, out, errOut := run(t, "sources", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		FormatVersion int `json:"format_version"`
		Presets       []struct {
			Name          string `json:"name"`
			MinIPv4Prefix int    `json:"min_ipv4_prefix"`
			Filters       []struct {
				Name string `json:"name"`
			} `json:"filters"`
		} `json:"presets"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion != 1 || len(doc.Presets) != len(vendor.Presets) {
		t.Fatalf("format %d, %d presets", doc.FormatVersion, len(doc.Presets))
	}
	for _, p := range doc.Presets {
		if p.Name == "google" && p.MinIPv4Prefix != 10 {
			t.Errorf("google: min_ipv4_prefix %d", p.MinIPv4Prefix)
		}
	}
	if code, _, errOut := run(t, "sources", "-o", "yaml"); code == 0 || !strings.Contains(errOut, `--output "yaml"`) {
		t.Errorf("bad -o: %d %s", code, errOut)
	}
}
