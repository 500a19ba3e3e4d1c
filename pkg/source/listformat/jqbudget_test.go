package listformat

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

// A jq expression may build values without end from a tiny document;
// what it allocates is bounded, and a result that is not a string is
// previewed, never marshalled whole (issue 20 item 7: [range(5000000)]
// took 426 MB).
func TestJQAllocationBounded(t *testing.T) {
	for _, expr := range []string{
		"[range(5000000)]",
		"[range(5000000) | tostring] | .[]",
		`reduce range(24) as $i (["xxxxxxxxxxxxxxxx"]; . + .) | .[]`,
		`reduce range(24) as $i ("xxxxxxxxxxxxxxxx"; . + .)`,
		`"x" * 100000000`,
	} {
		p, err := New("json", expr)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err = p.Parse(context.Background(), []byte(`{"a": 1}`))
		runtime.ReadMemStats(&after)
		allocated := after.TotalAlloc - before.TotalAlloc
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "allocated more than its budget of 64 MiB") {
			t.Errorf("%s: got %v, want a one-line error naming the budget", expr, err)
		}
		// 120 MB: the budget, plus the one instruction running when it is
		// passed ("x" * 100000000), but not one more doubling (the clock
		// read only every 32 instructions let one through: 128 MB).
		if allocated > 120<<20 {
			t.Errorf("%s: allocated %d MB (%v); want at most 120", expr, allocated>>20, err)
		}
	}
	// A large list picked apart the usual way stays well inside it.
	p, err := New("json", `.prefixes[] | select(.service == "EC2") | .ip_prefix`)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.Parse(context.Background(), awsShaped(MaxEntries)); err != nil || len(out) != MaxEntries {
		t.Errorf("%d prefixes, %v", len(out), err)
	}
}
