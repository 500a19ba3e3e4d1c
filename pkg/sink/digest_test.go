package sink

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// One sink has one digest however it is written; any other option,
// however small, has another.
func TestSpecDigest(t *testing.T) {
	r := Registry{"nftables": {ArgKey: "path"}}
	fromFlag := func(s string) Spec {
		t.Helper()
		spec, err := r.ParseFlag(s)
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	fromFile := func(s string) Spec {
		t.Helper()
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			t.Fatal(err)
		}
		spec, err := r.FromConfigFile(n.Content[0], 0, "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	base := fromFlag("nftables:/etc/x.nft?apply=true&sets=b,a")
	for name, same := range map[string]Spec{
		"config file":    fromFile("{type: nftables, path: /etc/x.nft, apply: true, sets: [a, b]}"),
		"keys reordered": fromFile("{apply: true, type: nftables, sets: [b, a], path: /etc/x.nft}"),
		"quoted scalar":  fromFile("{type: nftables, path: '/etc/x.nft', apply: \"true\", sets: [a, b]}"),
	} {
		if same.Digest() != base.Digest() {
			t.Errorf("%s: digest differs from the flag's", name)
		}
	}
	for name, other := range map[string]Spec{
		"another path":   fromFlag("nftables:/etc/y.nft?apply=true&sets=a,b"),
		"apply off":      fromFlag("nftables:/etc/x.nft?apply=false&sets=a,b"),
		"one more key":   fromFlag("nftables:/etc/x.nft?apply=true&nft=/tmp/evil&sets=a,b"),
		"fewer sets":     fromFlag("nftables:/etc/x.nft?apply=true&sets=a"),
		"all sets":       fromFlag("nftables:/etc/x.nft?apply=true"),
		"another type":   {Type: "iptables", Sets: base.Sets, Options: base.Options},
		"value as key":   fromFile("{type: nftables, path: /etc/x.nft, 'true': apply, sets: [a, b]}"),
		"list not value": fromFile("{type: nftables, path: [/etc/x.nft], apply: true, sets: [a, b]}"),
	} {
		if other.Digest() == base.Digest() {
			t.Errorf("%s: same digest as the flag's", name)
		}
	}
	if (Spec{Type: "nftables"}).Digest() != fromFlag("nftables").Digest() {
		t.Error("a spec without an options node differs from one with no options")
	}
}
