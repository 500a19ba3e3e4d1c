// Package render prints resolve results and plans, as text for people and
// as versioned JSON for scripts.
package render

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/controller"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// FormatVersion is bumped on any incompatible JSON change.
const FormatVersion = 1

type jsonSink struct {
	Sink      string       `json:"sink"`
	Add       []plan.Entry `json:"add"`
	Remove    []plan.Entry `json:"remove"`
	Unchanged int          `json:"unchanged"`
	Covered   []plan.Entry `json:"covered,omitempty"`
	Held      int          `json:"held,omitempty"`
	Drift     []string     `json:"drift,omitempty"`
	// Unsafe and Retired are the removals no source asked for: entries
	// held under our marker that fail validation, and entries of sets no
	// longer defined or routed to the sink. Both are also in Remove.
	Unsafe  []plan.Entry `json:"unsafe,omitempty"`
	Retired []plan.Entry `json:"retired,omitempty"`
	Applied bool         `json:"applied"`
	Error   string       `json:"error,omitempty"`
}

type jsonSummary struct {
	Add    int `json:"add"`
	Remove int `json:"remove"`
	Drift  int `json:"drift"`
	// Errors counts failed sinks, as it always has (format_version 1
	// keeps its meaning); FailedSources and FrozenSets count the rest of
	// what makes a run exit non-zero.
	Errors        int `json:"errors"`
	FailedSources int `json:"failed_sources"`
	FrozenSets    int `json:"frozen_sets"`
}

// SyncJSON prints a sync report as format_version 1 JSON. Its sets are
// streamed as resolve's are, so every source's list is not built again
// as strings; the sinks and summary go through encoding/json.
func SyncJSON(w io.Writer, r controller.Report) error {
	sinks := []jsonSink{}
	var sum jsonSummary
	for _, s := range r.Sinks {
		js := jsonSink{
			Sink: s.Plan.Sink, Add: nonNil(s.Plan.Add), Remove: nonNil(s.Plan.Remove),
			Unchanged: s.Plan.Unchanged(), Covered: s.Plan.Covered, Held: s.Plan.Held,
			Drift: s.Plan.Drift, Unsafe: s.Plan.Unsafe, Retired: s.Plan.Retired, Applied: s.Applied,
		}
		if s.Err != nil {
			js.Error = oneline.Error(s.Err)
			sum.Errors++
		}
		sum.Add += len(s.Plan.Add)
		sum.Remove += len(s.Plan.Remove)
		sum.Drift += len(s.Plan.Drift)
		sinks = append(sinks, js)
	}
	sum.FrozenSets = frozenSets(r.Sets)
	for _, set := range r.Sets {
		for _, src := range set.Sources {
			if src.Err != nil {
				sum.FailedSources++
			}
		}
	}
	jw := &jsonWriter{w: bufio.NewWriterSize(w, 64<<10)}
	jw.raw("{\n")
	jw.field(1, "format_version", FormatVersion, false)
	jw.field(1, "dry_run", r.DryRun, true)
	jw.sets(r.Sets)
	jw.field(1, "sinks", sinks, true)
	jw.field(1, "summary", sum, true)
	return jw.end()
}

func nonNil(es []plan.Entry) []plan.Entry {
	if es == nil {
		return []plan.Entry{}
	}
	return es
}

// ResolveText prints each set, its prefixes and where they came from.
// It is written through a buffer as it goes: a set of a million prefixes
// is never held as text.
func ResolveText(w io.Writer, results []resolution.SetResult) error {
	b := bufio.NewWriterSize(w, 64<<10)
	for i, r := range results {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(b, "%s (%s %s)", r.Spec.Name, r.Spec.Direction, ports(r.Spec.Protocol, r.Spec.Ports))
		if r.Desired.Frozen {
			fmt.Fprintf(b, ": FROZEN%s, sinks keep what they hold\n    reason: %s\n", staleSince(r), r.Desired.Reason)
		} else {
			fmt.Fprintf(b, ": %d %s%s\n", len(r.Desired.Prefixes), plural(len(r.Desired.Prefixes), "prefix", "prefixes"), retained(r))
			for _, p := range r.Desired.Prefixes {
				line := append(b.AvailableBuffer(), "    "...)
				if p.IsValid() {
					line = p.AppendTo(line)
				} else {
					line = append(line, "invalid Prefix"...) // as %s writes it
				}
				b.Write(append(line, '\n'))
			}
		}
		for _, s := range r.Sources {
			fmt.Fprintf(b, "  %s %s: ", s.Kind, s.Name)
			switch {
			case s.Err != nil:
				fmt.Fprintf(b, "error: %s\n", sourceError(s))
			default:
				fmt.Fprintf(b, "%d %s", s.Len(), plural(s.Len(), "address", "addresses"))
				if len(s.CNAMEs) > 0 {
					fmt.Fprintf(b, " via %s", strings.Join(s.CNAMEs, ", "))
				}
				b.WriteString("\n")
			}
			for _, w := range s.Warnings {
				fmt.Fprintf(b, "    warning: %s\n", w)
			}
		}
	}
	return b.Flush()
}

// SyncText prints the plan the way Terraform does: a legend of the symbols
// used, one line per change, and a closing count.
func SyncText(w io.Writer, r controller.Report) error {
	// Written through a buffer as it goes: a plan of a million changes is
	// never held as text.
	b := bufio.NewWriterSize(w, 64<<10)
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Sets:")
	for _, s := range r.Sets {
		status := fmt.Sprintf("%d %s%s", len(s.Desired.Prefixes), plural(len(s.Desired.Prefixes), "prefix", "prefixes"), retained(s))
		if s.Desired.Frozen {
			status = "FROZEN" + staleSince(s) + " (kept as is): " + s.Desired.Reason
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Spec.Name, s.Spec.Direction, ports(s.Spec.Protocol, s.Spec.Ports), status)
	}
	tw.Flush()
	var add, remove, drift int
	used := map[string]bool{}
	for _, s := range r.Sinks {
		add += len(s.Plan.Add)
		remove += len(s.Plan.Remove)
		drift += len(s.Plan.Drift)
		used["+"] = used["+"] || len(s.Plan.Add) > 0
		used["-"] = used["-"] || len(s.Plan.Remove) > 0
		used["~"] = used["~"] || len(s.Plan.Drift) > 0
	}
	if add+remove+drift > 0 {
		b.WriteString("\npdsafelist will make these changes:\n")
		for _, l := range []struct{ sym, word string }{{"+", "add"}, {"-", "remove"}, {"~", "repair"}} {
			if used[l.sym] {
				fmt.Fprintf(b, "  %s %s\n", l.sym, l.word)
			}
		}
	}
	for _, s := range r.Sinks {
		fmt.Fprintf(b, "\n%s\n", s.Plan.Sink)
		lines := changeLines{add: s.Plan.Add, remove: s.Plan.Remove, unsafe: marks(s.Plan.Unsafe), retired: marks(s.Plan.Retired)}
		lines.write(b)
		if n := len(s.Plan.Unsafe); n > 0 {
			fmt.Fprintf(b, "  ! %d %s held under our marker %s validation (address limits, set name, protocol, port, direction): removed under every policy\n",
				n, plural(n, "entry", "entries"), plural(n, "fails", "fail"))
		}
		if n := len(s.Plan.Retired); n > 0 {
			sets := setList(s.Plan.Retired)
			fmt.Fprintf(b, "  ! %d %s of retired %s %s (no longer defined or routed to this sink): removed\n",
				n, plural(n, "entry", "entries"), plural(len(sets), "set", "sets"), strings.Join(sets, ", "))
		}
		for _, d := range s.Plan.Drift {
			fmt.Fprintf(b, "  ~ %s\n", d)
		}
		if s.Err == nil || s.Plan.Unchanged()+len(s.Plan.Add)+len(s.Plan.Remove) > 0 {
			fmt.Fprintf(b, "  %d unchanged", s.Plan.Unchanged())
			if n := len(s.Plan.Covered); n > 0 {
				fmt.Fprintf(b, ", %d covered by unmanaged rules", n)
			}
			if s.Plan.Held > 0 {
				fmt.Fprintf(b, ", %d kept by policy", s.Plan.Held)
			}
			b.WriteString("\n")
		}
		if s.Err != nil {
			fmt.Fprintf(b, "  error: %s\n", oneline.Error(s.Err))
		}
	}
	b.WriteString("\n")
	b.WriteString(summary(r, add, remove, drift))
	return b.Flush()
}

func marks(es []plan.Entry) map[plan.Entry]bool {
	m := make(map[plan.Entry]bool, len(es))
	for _, e := range es {
		m[e] = true
	}
	return m
}

// setList names the sets of es once each, quoted: a name read back from a
// sink is not trusted to be printable.
func setList(es []plan.Entry) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range es {
		if !seen[e.Set] {
			seen[e.Set] = true
			out = append(out, strconv.Quote(e.Set))
		}
	}
	return out
}

// summary closes the plan. It claims only what the run saw: a failed sink
// is counted as failed, never as matching, and when every set is frozen
// nothing was compared at all.
func summary(r controller.Report, add, remove, drift int) string {
	var b strings.Builder
	total, failed := len(r.Sinks), 0
	for _, s := range r.Sinks {
		if s.Err != nil {
			failed++
		}
	}
	failures := fmt.Sprintf("%d of %d %s failed (see above).\n", failed, total, plural(total, "sink", "sinks"))
	nFrozen := frozenSets(r.Sets)
	frozen := len(r.Sets) > 0 && nFrozen == len(r.Sets)
	if frozen {
		b.WriteString("No set was planned: every set is frozen and kept as is.\n")
	} else if nFrozen > 0 {
		// The run exits 1 for these: nothing below may read as all well.
		fmt.Fprintf(&b, "%d of %d sets %s frozen and kept as is (see above).\n", nFrozen, len(r.Sets), plural(nFrozen, "is", "are"))
	}
	if add+remove+drift == 0 {
		switch {
		case failed == 0 && nFrozen == 0:
			b.WriteString("No changes. The sinks match the desired sets.\n")
		case failed == 0 && !frozen:
			b.WriteString("No changes for the sets that answered.\n")
		case failed == 0:
			// Frozen, and said so above: there was nothing to match.
		case frozen:
			b.WriteString(failures)
		case failed == total:
			b.WriteString("Nothing planned: " + failures)
		default:
			fmt.Fprintf(&b, "No changes to %d of %d %s; %d failed (see above).\n", total-failed, total, plural(total, "sink", "sinks"), failed)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "Plan: %d to add, %d to remove", add, remove)
	if drift > 0 {
		fmt.Fprintf(&b, ", %d to repair", drift)
	}
	b.WriteString(".\n")
	if r.DryRun {
		b.WriteString("Dry run: nothing was applied.\n")
		if failed > 0 {
			b.WriteString(failures)
		}
		return b.String()
	}
	// Out of the sinks that had changes or could not be planned.
	applied, acted := 0, 0
	for _, s := range r.Sinks {
		if s.Applied {
			applied++
		}
		if s.Err != nil || s.Plan.HasChanges() {
			acted++
		}
	}
	fmt.Fprintf(&b, "Applied to %d of %d %s", applied, acted, plural(acted, "sink", "sinks"))
	if failed > 0 {
		fmt.Fprintf(&b, "; %d failed (see above)", failed)
	}
	b.WriteString(".\n")
	return b.String()
}

func frozenSets(sets []resolution.SetResult) int {
	n := 0
	for _, s := range sets {
		if s.Desired.Frozen {
			n++
		}
	}
	return n
}

// where is the last column of a plan line: direction and port, or nothing
// for a prefix list entry, which holds a bare CIDR.
func where(e plan.Entry) string {
	w := e.Direction.String()
	if e.Protocol != 0 {
		w += " " + e.Protocol.String() + "/" + strconv.Itoa(int(e.Port))
	}
	if w = strings.TrimSpace(w); w == "" {
		return ""
	}
	return "\t" + w
}

func ports(proto string, ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return proto + "/" + strings.Join(s, ",")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func staleSince(r resolution.SetResult) string {
	if r.StaleSince.IsZero() {
		return ""
	}
	return " since " + r.StaleSince.UTC().Format(time.RFC3339)
}

func retained(r resolution.SetResult) string {
	if len(r.Retained) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d retained from earlier answers)", len(r.Retained))
}

// sourceError drops the source's own name from its message when the line
// already starts with it.
func sourceError(r source.Result) string {
	msg := oneline.Error(r.Err)
	for _, prefix := range []string{string(r.Kind) + " " + r.Name + ": ", r.Name + ": "} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			return rest
		}
	}
	return msg
}
