// Package nftables writes one self-contained nftables file holding a
// dedicated table, and optionally loads it.
package nftables

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	gnft "github.com/google/nftables"
	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/procrun"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// Options are the sink's settings (config or --sink nftables:PATH?k=v).
type Options struct {
	// Path is the file written; a missing parent directory is created.
	Path string `yaml:"path"`
	// Table is the inet table we own; nothing outside it is ever written.
	Table string `yaml:"table"`
	// Enforce drops other traffic on the managed ports: none, ingress,
	// egress or both.
	Enforce string `yaml:"enforce"`
	// Apply loads the file with nft -f after writing it.
	Apply bool `yaml:"apply"`
	// Check runs nft -c -f before the rename: auto (when nft is usable),
	// always, or never.
	Check string `yaml:"check"`
	// Nft is the command line that runs nft, e.g. "sudo nft".
	Nft string `yaml:"nft"`
	// Netns names the network namespace (as ip netns add creates it,
	// under /run/netns) whose table apply reads and loads; empty: ours.
	// nft runs there through ip netns exec.
	Netns string `yaml:"netns"`
}

// DefaultPath is used when no sink is configured.
const DefaultPath = "pdsafelist.nft"

// DefaultSpec is the sink opened when none is configured: an nftables file
// DefaultPath, as --sink nftables:pdsafelist.nft would give.
func DefaultSpec() sink.Spec {
	return sink.Spec{Type: "nftables", Origin: "default sink (nftables:" + DefaultPath + ")",
		Options: yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "path"}, {Kind: yaml.ScalarNode, Value: DefaultPath}}}}
}

var (
	tableRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,31}$`)
	netnsRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// checkPieceSize is the most elements one nft -c sees; tests lower it.
var checkPieceSize = 100_000

func defaultOptions() Options {
	return Options{Path: DefaultPath, Table: "pdsafelist", Enforce: "none", Check: "auto", Nft: "nft"}
}

// Factory registers the sink type.
var Factory = sink.Factory{
	ArgKey:  "path",
	Help:    "nftables:PATH  write an nftables file (options: table, enforce=none|ingress|egress|both, apply, check=auto|always|never, nft, netns)",
	Options: func() any { return defaultOptions() },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := defaultOptions()
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		s, err := New(o, spec.Origin)
		if err != nil {
			return nil, err
		}
		s.mark = env.SelfMark.Mark()
		if s.enforces(plan.Egress) {
			env.SelfMark.Enable()
		}
		return s, nil
	},
}

// Sink is the nftables file sink.
type Sink struct {
	opts   Options
	origin string
	nft    []string
	// mark is accepted in the egress chain before its drop: the tool's
	// own connections.
	mark selfmark.Mark
	// run executes a command; tests replace it.
	run func(ctx context.Context, argv []string, stdin []byte) ([]byte, error)
	// beforeFlush, when set, sees each element batch before it is sent:
	// tests count batches and make one fail.
	beforeFlush func(c *gnft.Conn, t *gnft.Table)
	// dumps counts full reads of the loaded table, for tests.
	dumps int
}

// New validates options and returns the sink.
func New(o Options, origin string) (*Sink, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("%s: path is empty", origin)
	}
	if err := sink.CheckOptions(origin, o); err != nil {
		return nil, err
	}
	if !tableRE.MatchString(o.Table) {
		return nil, fmt.Errorf("%s: table %q: want a short identifier", origin, o.Table)
	}
	switch o.Enforce {
	case "", "none", "ingress", "egress", "both":
	default:
		return nil, fmt.Errorf("%s: enforce %q: want none, ingress, egress or both", origin, o.Enforce)
	}
	switch o.Check {
	case "", "auto", "always", "never":
	default:
		return nil, fmt.Errorf("%s: check %q: want auto, always or never", origin, o.Check)
	}
	if o.Netns != "" && (!netnsRE.MatchString(o.Netns) || o.Netns == "." || o.Netns == "..") {
		return nil, fmt.Errorf("%s: netns %q: want the name of a network namespace under /run/netns", origin, o.Netns)
	}
	nft := strings.Fields(o.Nft)
	if o.Apply && slices.ContainsFunc(nft, func(f string) bool { return f == "netns" || f == "nsenter" || strings.HasSuffix(f, "/nsenter") }) {
		// The table is read through netlink in the namespace the run is
		// in; an nft in another one would load where nothing is read.
		return nil, fmt.Errorf("%s: nft %q runs in another network namespace; name it with netns instead, so the table is read there too", origin, o.Nft)
	}
	if len(nft) == 0 {
		nft = []string{"nft"}
	}
	return &Sink{opts: o, origin: origin, nft: nft, run: runCommand}, nil
}

// Name identifies the sink in plans.
func (s *Sink) Name() string { return "nftables:" + s.opts.Path }

// Current parses the file we wrote last time. A file we did not write is
// refused: overwriting someone's ruleset would be worse than failing. With
// apply, the loaded table is read through netlink and compared with the
// file too.
func (s *Sink) Current(ctx context.Context) (plan.State, error) {
	// A stamp made at this generation stands in for the dump; without
	// one, the kernel's table is dumped while the file is read and parsed.
	var stamped reading
	var live chan reading
	if s.opts.Apply {
		if stamped = s.stampedKernel(); !stamped.stamped {
			live = make(chan reading, 1)
			go func() { live <- s.readKernel() }()
		}
	}
	data, err := readFile(s.opts.Path)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing of ours to compare with; the first apply loads the
		// table whole. The read is waited for, so none outlives the call.
		if live != nil {
			<-live
		}
		return plan.State{}, nil
	}
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), err)
	}
	// The dump is compared with the file's intervals, kept as it is
	// parsed; a stamped run needs them only to apply a batch.
	parseFile := parse
	if live != nil {
		parseFile = parseLive
	}
	f, body, err := parseFile(data)
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), err)
	}
	if f.Table != s.opts.Table {
		return plan.State{}, fmt.Errorf("%s: file manages table inet %s, configured table is %s; refusing to overwrite", s.Name(), f.Table, s.opts.Table)
	}
	st := plan.State{Owned: f.Entries, Unlabelled: f.Unlabelled}
	if len(f.Unlabelled) > 0 {
		st.Drift = append(st.Drift, fmt.Sprintf("%d entries are in nft sets whose name no longer names a set (hand-edited); every routed set holds them until the file is rewritten", len(f.Unlabelled)))
	} else if !s.renders(f.Entries, data) {
		st.Drift = append(st.Drift, s.contentDrift(f.Entries, data))
	}
	if s.opts.Apply {
		l := stamped
		if live != nil {
			l = <-live
		}
		sum := sha256.Sum256([]byte(data))
		if l.stamped {
			if l.stamp.sum == sum {
				// Verified at this generation and nothing has changed
				// since: the table is the file.
				l.table = fileTable(body)
			} else {
				l = s.readKernel()
			}
		}
		var drift []string
		if !l.stamped {
			drift = s.liveDrift(body, len(f.Entries)+len(f.Unlabelled) > 0, l.table, l.err)
		}
		st.Drift = append(st.Drift, drift...)
		if l.err == nil {
			st.Snapshot = &liveRead{table: l.table, id: l.id}
			if !l.stamped && len(drift) == 0 && l.table != nil && l.id.ok && l.table.maximal() && !sink.IsReadOnly(ctx) {
				s.writeStamp(l.id.stamp(sum))
			}
		}
	}
	return st, nil
}

// readFile reads a file straight into a string: the parsed table and the
// comparison with its render both read pieces of it, and a []byte
// converted to a string would be a second copy of a 20 MB file.
func readFile(path string) (string, error) {
	// A named pipe in the file's place must not hold the run.
	f, err := regularfile.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		b.Grow(int(fi.Size()) + 1)
	}
	if _, err := io.Copy(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Apply renders the entries the plan leaves, checks the file with nft, then
// atomically replaces the old one and optionally loads it: when only set
// elements differ from the loaded table, as one netlink batch of exactly
// the difference; otherwise the whole file, which replaces the table.
func (s *Sink) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	pf, err := sink.NewPendingFile(s.opts.Path)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	defer pf.Cleanup()
	// Rendered into the temp file as it is written: a million entries
	// need no 24 MB buffer of the file first.
	fw := &fileWriter{pf: pf}
	bw := bufio.NewWriterSize(fw, 64<<10)
	// The plan's Keep and Add as they are: one address added to a
	// million makes no merged copy of them.
	runs := p.Runs()
	sets := groupRuns(runs)
	s.renderSets(bw, sets)
	bw.Flush() // fileWriter returns no error; it keeps it
	if fw.err != nil {
		return fmt.Errorf("%s: %w", s.Name(), fw.err)
	}
	var changes []setChange
	elementsOnly := false
	if s.opts.Apply {
		if lr, ok := p.Snapshot.(*liveRead); ok {
			changes, elementsOnly = s.elementChanges(lr.table, sets)
		}
	}
	if elementsOnly {
		// The loaded table already has the file's structure: the check
		// is of that structure with the elements the batch adds.
		part := added(sets, changes)
		if len(part) <= checkPieceSize {
			if checked, err := s.checkAt(ctx, filepath.Dir(pf.TempName()), sets, part); !checked && err != nil {
				return err
			}
		} else if err := s.check(ctx, pf.TempName(), runs, sets); err != nil {
			return err
		}
	} else if err := s.check(ctx, pf.TempName(), runs, sets); err != nil {
		return err
	}
	if err := pf.Replace(); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	if !s.opts.Apply {
		return nil
	}
	if elementsOnly {
		if err := s.applyElements(changes, p.Snapshot.(*liveRead).id, fw.sum()); err != nil {
			return fmt.Errorf("%s: element batch refused, loaded table unchanged: %s", s.Name(), oneline.Error(err))
		}
		return nil
	}
	if out, err := s.run(ctx, s.cmd("-f", s.opts.Path), nil); err != nil {
		return fmt.Errorf("%s: nft -f: %s", s.Name(), firstLine(out, err))
	}
	return nil
}

// fileWriter writes to a pending file and keeps its first error: render
// writes on without looking, and Apply reports the error once done.
type fileWriter struct {
	pf  *sink.PendingFile
	err error
	h   hash.Hash // of what was written, for the stamp
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err == nil {
		w.err = w.pf.Write(p)
	}
	if w.h == nil {
		w.h = sha256.New()
	}
	w.h.Write(p)
	return len(p), nil
}

func (w *fileWriter) sum() (s [sha256.Size]byte) {
	if w.h != nil {
		copy(s[:], w.h.Sum(nil))
	}
	return s
}

// check runs nft -c on the new file at path, rendered from entries
// grouped as sets. nft needs about 750 bytes per element to check a file
// (746 MB at a million, twice the rest of a sync), so a file of more than
// checkPieceSize elements is checked as pieces: complete files with the
// same table, sets, chains and rules, each holding the next checkPieceSize
// of the elements. Every element and every other line passes nft's check,
// and nft's memory stays that of one piece.
func (s *Sink) check(ctx context.Context, path string, runs [][]plan.Entry, sets []*nftSet) error {
	if s.opts.Check == "never" {
		return nil
	}
	if s.opts.Check != "always" {
		if _, err := exec.LookPath(s.nft[0]); err != nil {
			return nil
		}
	}
	n := 0
	for _, r := range runs {
		n += len(r)
	}
	if n <= checkPieceSize {
		_, err := s.nftCheck(ctx, path)
		return err
	}
	for part := range cut(runs, checkPieceSize) {
		if checked, err := s.checkPiece(ctx, filepath.Dir(path), sets, part); !checked {
			return err
		}
	}
	return nil
}

// checkAt checks the piece of sets holding part, as check does: not at
// all with check=never, nor with check=auto when nft is not found.
func (s *Sink) checkAt(ctx context.Context, dir string, sets []*nftSet, part []plan.Entry) (bool, error) {
	if s.opts.Check == "never" {
		return false, nil
	}
	if s.opts.Check != "always" {
		if _, err := exec.LookPath(s.nft[0]); err != nil {
			return false, nil
		}
	}
	return s.checkPiece(ctx, dir, sets, [][]plan.Entry{part})
}

// checkPiece writes the piece of sets holding part beside the new file,
// where nft already reads, checks it and removes it.
func (s *Sink) checkPiece(ctx context.Context, dir string, sets []*nftSet, part [][]plan.Entry) (bool, error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.opts.Path)+".check")
	if err != nil {
		return false, fmt.Errorf("%s: check: %w", s.Name(), err)
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 64<<10)
	s.renderSets(bw, piece(sets, part))
	err = bw.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("%s: check: %w", s.Name(), err)
	}
	return s.nftCheck(ctx, f.Name())
}

// nftCheck runs nft -c -f path. checked is false when nft refused the
// file, or when check=auto found nft without the privilege to check,
// which no later piece would have either.
func (s *Sink) nftCheck(ctx context.Context, path string) (checked bool, err error) {
	out, err := s.run(ctx, s.cmd("-c", "-f", path), nil)
	if err == nil {
		return true, nil
	}
	msg := firstLine(out, err)
	if s.opts.Check != "always" && strings.Contains(msg, "Operation not permitted") {
		// Unprivileged users can still write files; the check needs
		// CAP_NET_ADMIN.
		return false, nil
	}
	return false, fmt.Errorf("%s: nft -c rejected the new file, old file kept: %s", s.Name(), msg)
}

func (s *Sink) cmd(args ...string) []string {
	var argv []string
	if s.opts.Netns != "" {
		argv = []string{"ip", "netns", "exec", s.opts.Netns}
	}
	return append(append(argv, s.nft...), args...)
}

func runCommand(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	out, err := procrun.Run(ctx, argv, stdin)
	var pe *procrun.Error
	if errors.As(err, &pe) && ctx.Err() == nil {
		// nft reports on stderr; callers quote its first line.
		return append(out, pe.Stderr...), err
	}
	return out, err
}

// firstLine keeps errors to one line: nft prints the offending input and a
// caret marker below the message.
func firstLine(out []byte, err error) string {
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return err.Error()
}
