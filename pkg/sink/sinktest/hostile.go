package sinktest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// lineEnders are characters that end a line, or a field, in something a
// sink writes to: C0 controls (newline, CR, NUL, escape, tab), DEL, C1's
// next line and Unicode's line separator.
var lineEnders = []string{"\n", "\r", "\x00", "\x1b", "\t", "\x7f", "\u0085", "\u2028"}

// hostile is a value that, written raw into an nginx include, would allow
// everyone (issue 20 item 4).
func hostile(c string) string { return "x" + c + "allow all;" + c + "#" }

// hostileStrings feeds such values through every free-text setting the
// harness names and through a set name, and wants each refused with one
// printable line, the target unchanged and nothing written.
func hostileStrings(t testing.TB, tg *Target, _ func(testing.TB) *Target) {
	mustCycle(t, tg, base())
	// A sync that has something to write, so an accepted value would show.
	more := base()
	more[0].Prefixes = append(more[0].Prefixes, netip.MustParsePrefix("54.1.1.7/32"))
	refused := func(what string, try func() error) {
		t.Helper()
		before, w := tg.Snapshot(t), tg.Writes(t)
		err := try()
		switch {
		case err == nil:
			t.Errorf("%s: accepted", what)
		case oneline.Check(err.Error()) != nil:
			t.Errorf("%s: the refusal is not one printable line: %q", what, err)
		}
		if after := tg.Snapshot(t); after != before {
			t.Errorf("%s: the target changed (-before +after):\n%s", what, cmp.Diff(before, after))
		}
		if n := tg.Writes(t) - w; n != 0 {
			t.Errorf("%s: %d writes", what, n)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(tg.Hostile)) {
		for _, c := range lineEnders {
			v := hostile(c)
			refused(fmt.Sprintf("%s %q", key, v), func() error {
				s, err := tg.Hostile[key](t, v)
				if err != nil {
					return err
				}
				with := *tg
				with.Open = func(testing.TB) sink.Sink { return s }
				_, err = cycle(t, &with, more)
				return err
			})
		}
	}
	// Config refuses such a set name; a sink must not rely on that.
	for _, c := range lineEnders {
		d := append(base(), plan.DesiredSet{Name: "api" + c + "allow", Direction: plan.Egress, Protocol: plan.TCP,
			Ports: []uint16{443}, Prefixes: pfx("54.9.9.9/32")})
		refused(fmt.Sprintf("set name %q", d[2].Name), func() error {
			_, err := cycle(t, tg, d)
			return err
		})
	}
	settled(t, tg, base(), "after the hostile strings")
}
