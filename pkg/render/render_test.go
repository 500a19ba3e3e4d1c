package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/docs/schema"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/golden"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/schemacheck"
)

func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func e(set, prefix string, dir plan.Direction) plan.Entry {
	return plan.Entry{Set: set, Prefix: p(prefix), Direction: dir, Protocol: plan.TCP, Port: 443}
}

func fixture() []resolution.SetResult {
	events := config.SetSpec{Name: "events", Direction: "egress", Protocol: "tcp", Ports: []uint16{443}}
	webhooks := config.SetSpec{Name: "webhooks", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}}
	return []resolution.SetResult{
		{
			Spec: events,
			Sources: []source.Result{{
				Kind: source.KindDNS, Name: "events.pagerduty.com", CNAMEs: []string{"events.gslb.pagerduty.com"},
				Addresses: []source.Address{{Prefix: p("193.0.2.10/32"), TTL: 30 * time.Second}, {Prefix: p("2001:db9::10/128"), TTL: 60 * time.Second}},
				Warnings:  []string{"nameserver 127.0.0.1:5354: timeout"},
			}},
			Desired:  plan.DesiredSet{Name: "events", Direction: plan.Egress, Protocol: plan.TCP, Ports: []uint16{443}, Prefixes: []netip.Prefix{p("193.0.2.10/32"), p("193.0.2.11/32"), p("2001:db9::10/128")}},
			Retained: []netip.Prefix{p("193.0.2.11/32")},
		},
		{
			Spec:       webhooks,
			Sources:    []source.Result{{Kind: source.KindHTTP, Name: "https://lists.example/webhooks-us-service-region-json", Err: errors.New("https://lists.example/webhooks-us-service-region-json: HTTP 503 Service Unavailable")}},
			Desired:    plan.DesiredSet{Name: "webhooks", Direction: plan.Ingress, Protocol: plan.TCP, Ports: []uint16{443}, Frozen: true, Reason: "https://lists.example/webhooks-us-service-region-json: HTTP 503 Service Unavailable"},
			Err:        errors.New("https://lists.example/webhooks-us-service-region-json: HTTP 503 Service Unavailable"),
			StaleSince: time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC),
		},
	}
}

func sinks() []controller.SinkReport {
	return []controller.SinkReport{
		{Plan: plan.SinkPlan{
			Sink:    "nftables:/etc/pdsafelist.nft",
			Add:     []plan.Entry{e("events", "193.0.2.10/32", plan.Egress), e("events", "2001:db9::10/128", plan.Egress)},
			Remove:  []plan.Entry{e("events", "198.52.100.7/32", plan.Egress)},
			Keep:    []plan.Entry{e("webhooks", "203.1.113.5/32", plan.Ingress)},
			Covered: []plan.Entry{e("events", "203.1.113.9/32", plan.Egress)},
			Drift:   []string{"table inet pdsafelist is not loaded; load it"},
		}},
		{Plan: plan.SinkPlan{Sink: "ec2:sg-0abc"}, Err: errors.New("read ec2:sg-0abc: UnauthorizedOperation")},
	}
}

// readBack is a plan removing what no source asked to remove: hand-added
// world-open rules under our marker, and a set dropped from the config.
func readBack() []controller.SinkReport {
	unsafe := []plan.Entry{e("legacy", "0.0.0.0/1", plan.Ingress), e("legacy", "128.0.0.0/1", plan.Ingress)}
	retired := []plan.Entry{e("oldset", "198.52.100.7/32", plan.Ingress)}
	return []controller.SinkReport{{Plan: plan.SinkPlan{
		Sink:    "iptables-file:/etc/iptables/rules.v4",
		Remove:  plan.Sort(append(append([]plan.Entry{}, unsafe...), retired...)),
		Keep:    []plan.Entry{e("events", "193.0.2.10/32", plan.Egress)},
		Unsafe:  unsafe,
		Retired: retired,
	}}}
}

func TestGolden(t *testing.T) {
	inSync := []controller.SinkReport{{Plan: plan.SinkPlan{Sink: "nftables:pdsafelist.nft", Keep: []plan.Entry{e("events", "193.0.2.10/32", plan.Egress)}}}}
	applied := sinks()
	applied[0].Applied = true
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"resolve.txt", func(b *bytes.Buffer) error { return ResolveText(b, fixture()) }},
		{"resolve.json", func(b *bytes.Buffer) error { return ResolveJSON(b, fixture()) }},
		{"sync-dry-run.txt", func(b *bytes.Buffer) error {
			return SyncText(b, controller.Report{DryRun: true, Sets: fixture(), Sinks: sinks()})
		}},
		{"sync-dry-run.json", func(b *bytes.Buffer) error {
			return SyncJSON(b, controller.Report{DryRun: true, Sets: fixture(), Sinks: sinks()})
		}},
		{"sync-applied.txt", func(b *bytes.Buffer) error { return SyncText(b, controller.Report{Sets: fixture(), Sinks: applied}) }},
		{"sync-applied.json", func(b *bytes.Buffer) error { return SyncJSON(b, controller.Report{Sets: fixture(), Sinks: applied}) }},
		{"sync-no-changes.txt", func(b *bytes.Buffer) error { return SyncText(b, controller.Report{Sets: fixture()[:1], Sinks: inSync}) }},
		{"sync-read-back.txt", func(b *bytes.Buffer) error {
			return SyncText(b, controller.Report{DryRun: true, Sets: fixture()[:1], Sinks: readBack()})
		}},
		{"sync-read-back.json", func(b *bytes.Buffer) error {
			return SyncJSON(b, controller.Report{DryRun: true, Sets: fixture()[:1], Sinks: readBack()})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.write(&b); err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, tt.name, b.Bytes())
			if doc, ok := strings.CutSuffix(tt.name, ".json"); ok {
				name := schema.Sync
				if strings.HasPrefix(doc, "resolve") {
					name = schema.Resolve
				}
				schemacheck.Assert(t, name, b.Bytes())
			}
		})
	}
}

// The JSON contract: keys scripts rely on must stay where they are.
func TestSyncJSONContract(t *testing.T) {
	var b bytes.Buffer
	if err := SyncJSON(&b, controller.Report{DryRun: true, Sets: fixture(), Sinks: sinks()}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		FormatVersion *int  `json:"format_version"`
		DryRun        *bool `json:"dry_run"`
		Sets          []struct {
			Name     string   `json:"name"`
			Prefixes []string `json:"prefixes"`
			Sources  []struct {
				Kind, Name, Error string
			} `json:"sources"`
		} `json:"sets"`
		Sinks []struct {
			Sink      string            `json:"sink"`
			Add       []json.RawMessage `json:"add"`
			Remove    []json.RawMessage `json:"remove"`
			Unchanged *int              `json:"unchanged"`
			Applied   *bool             `json:"applied"`
		} `json:"sinks"`
		Summary struct {
			Add, Remove, Errors int
			FailedSources       int `json:"failed_sources"`
			FrozenSets          int `json:"frozen_sets"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion == nil || *doc.FormatVersion != 1 || doc.DryRun == nil || !*doc.DryRun {
		t.Fatalf("format_version/dry_run missing: %s", b.String())
	}
	if len(doc.Sinks) != 2 || doc.Sinks[0].Unchanged == nil || *doc.Sinks[0].Unchanged != 1 || doc.Sinks[0].Applied == nil {
		t.Fatalf("sinks: %+v", doc.Sinks)
	}
	if doc.Sinks[1].Add == nil || doc.Sinks[1].Remove == nil {
		t.Error("empty add/remove must be [] not null")
	}
	// One failed sink and one frozen set.
	if doc.Summary.Add != 2 || doc.Summary.Remove != 1 || doc.Summary.Errors != 1 || doc.Summary.FailedSources != 1 || doc.Summary.FrozenSets != 1 {
		t.Errorf("summary = %+v", doc.Summary)
	}
	if doc.Sets[1].Prefixes == nil || doc.Sets[1].Sources[0].Error == "" {
		t.Errorf("frozen set: %+v", doc.Sets[1])
	}
}

// A prefix list holds bare CIDRs: its entries print without a port.
func TestPrefixListEntryHasNoPort(t *testing.T) {
	var b bytes.Buffer
	r := controller.Report{DryRun: true, Sinks: []controller.SinkReport{{Plan: plan.SinkPlan{Sink: "ec2-prefix-list:us-east-1/pl-1",
		Add: []plan.Entry{{Set: "events", Prefix: p("198.52.100.1/32")}}}}}}
	if err := SyncText(&b, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte("  + events  198.52.100.1/32\n")) || bytes.Contains(b.Bytes(), []byte("/0")) {
		t.Errorf("prefix list entry line:\n%s", b.String())
	}
}
