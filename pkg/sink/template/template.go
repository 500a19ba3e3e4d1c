// Package template renders the routed sets into a file another program
// reads: an nginx or HAProxy allow-list, a plain or JSON list, a
// Kubernetes NetworkPolicy, or the user's own Go template. The file starts
// with a manifest of the entries it holds, in the format's own comment
// syntax, so the sink reads its state back from the file itself whatever
// the body looks like.
package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/procrun"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubenames"
)

// Options are the sink's settings (config or --sink template:PATH?k=v).
type Options struct {
	// Path is the file written; a missing parent directory is created.
	Path string `yaml:"path"`
	// Format picks a built-in template: nginx, haproxy, plain (the
	// default), json or k8s-networkpolicy.
	Format string `yaml:"format"`
	// Template names a Go text/template file to render instead of Format.
	Template string `yaml:"template"`
	// Comment starts a comment line in a custom template's output.
	Comment string `yaml:"comment"`
	// Check validates the new file before it counts. "{}" in it is the
	// path of the new file, written beside the old one (same directory,
	// a name starting with "."), before it replaces it; without "{}" the
	// file is put in place, checked, and put back if the check fails.
	// A list of arguments, or a string split on spaces (no quoting).
	Check sink.Command `yaml:"check"`
	// Reload runs after the file is replaced; if it fails, the old file
	// is restored so the next run tries again. "{}" is the file's path.
	Reload sink.Command `yaml:"reload"`
	// Name of the k8s-networkpolicy format's object (default pdsafelist).
	Name string `yaml:"name"`
	// Namespace of the k8s-networkpolicy format's object.
	Namespace string `yaml:"namespace"`
	// PodSelector is the k8s-networkpolicy format's k=v,... labels.
	PodSelector string `yaml:"pod_selector"`
}

// Factory registers the sink type.
var Factory = sink.Factory{
	ArgKey:  "path",
	Help:    "template:PATH  render an allow-list file (options: format=nginx|haproxy|plain|json|k8s-networkpolicy, template=FILE, comment, check=CMD ({} is the new file, beside the old), reload=CMD, name, namespace, pod_selector=k=v,...)",
	Options: func() any { return Options{} },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		var o Options
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		return New(o, env.OwnerID, spec.Origin)
	},
}

// Sink is the template file sink.
type Sink struct {
	opts    Options
	owner   string
	origin  string
	comment string
	tmpl    *template.Template
	labels  map[string]string
	// uses is what of Data the template reads.
	uses dataUse
	// run executes a command in its own process group, killed whole at
	// the deadline (procrun); tests replace it.
	run func(ctx context.Context, argv []string) ([]byte, error)
}

// New validates options and parses the template.
func New(o Options, owner, origin string) (*Sink, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("%s: path is empty", origin)
	}
	if err := sink.CheckOptions(origin, o); err != nil {
		return nil, err
	}
	if err := sink.CheckText(origin, "owner_id", owner); err != nil {
		return nil, err
	}
	s := &Sink{opts: o, owner: owner, origin: origin, run: func(ctx context.Context, argv []string) ([]byte, error) { return procrun.Run(ctx, argv, nil) }}
	switch {
	case o.Template != "" && o.Format != "":
		return nil, fmt.Errorf("%s: give format or template, not both", origin)
	case o.Template != "":
		text, err := regularfile.ReadFile(o.Template)
		if err != nil {
			return nil, fmt.Errorf("%s: template: %w", origin, unwrapPath(err))
		}
		s.comment = o.Comment
		if s.comment == "" {
			s.comment = "#"
		}
		t, err := template.New(filepath.Base(o.Template)).Funcs(funcs).Parse(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: template %s: %s", origin, o.Template, oneline.Error(err))
		}
		s.tmpl = t
	default:
		if o.Format == "" {
			o.Format = "plain"
			s.opts.Format = "plain"
		}
		f, ok := formats[o.Format]
		if !ok {
			return nil, fmt.Errorf("%s: format %q: want one of %s, or template=FILE", origin, o.Format, strings.Join(formatNames(), ", "))
		}
		if o.Comment != "" {
			return nil, fmt.Errorf("%s: comment applies to template=FILE only", origin)
		}
		s.comment = f.comment
		s.tmpl = template.Must(template.New(o.Format).Funcs(funcs).Parse(f.text))
		if f.comment != "" {
			s.uses = usedFields(s.tmpl)
		}
	}
	if s.tmpl == nil || o.Template != "" || s.comment == "" {
		// A custom template may print all of Data; json holds it.
		s.uses = dataUse{entries: true, prefixes: true, groups: true}
	}
	if o.Format == "k8s-networkpolicy" {
		if s.opts.Name == "" {
			s.opts.Name = "pdsafelist"
		}
		if !kubenames.DNSLabel.MatchString(s.opts.Name) || (o.Namespace != "" && !kubenames.DNSLabel.MatchString(o.Namespace)) {
			return nil, fmt.Errorf("%s: name and namespace must be DNS labels (lower-case letters, digits and -)", origin)
		}
		labels, err := kubenames.ParseSelector(o.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("%s: pod_selector: %w", origin, err)
		}
		s.labels = labels
	} else if o.Name != "" || o.Namespace != "" || o.PodSelector != "" {
		return nil, fmt.Errorf("%s: name, namespace and pod_selector apply to format=k8s-networkpolicy only", origin)
	}
	return s, nil
}

// dataUse says which parts of Data to build: at a million entries each
// is tens of MB, and the built-in text formats read only the prefixes.
type dataUse struct {
	entries  bool // Entries
	prefixes bool // Prefixes, IPv4, IPv6
	groups   bool // Sets, Rules
}

// usedFields finds the fields a built-in template names anywhere. A field
// is read by name, or by a function handed dot, or not at all, so a
// field named nowhere is never read; a name inside a range over another
// field only costs a part built for nothing.
func usedFields(t *template.Template) dataUse {
	var u dataUse
	see := func(names []string) {
		for _, n := range names {
			switch n {
			case "Entries":
				u.entries = true
			case "Prefixes", "IPv4", "IPv6":
				u.prefixes = true
			case "Sets", "Rules":
				u.groups = true
			}
		}
	}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			// A function given dot (the k8s-networkpolicy format's
			// {{networkPolicy .}}) may read any field: build them all.
			if _, fn := n.Args[0].(*parse.IdentifierNode); fn && slices.ContainsFunc(n.Args[1:], func(a parse.Node) bool { _, dot := a.(*parse.DotNode); return dot }) {
				u = dataUse{entries: true, prefixes: true, groups: true}
			}
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			see(n.Ident)
		case *parse.ChainNode:
			walk(n.Node)
			see(n.Field)
		case *parse.VariableNode:
			see(n.Ident)
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walk(tt.Tree.Root)
		}
	}
	return u
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// Check refuses egress entries in the formats that list the sources of
// incoming requests: an egress set there would let its addresses in.
func (s *Sink) Check(p plan.SinkPlan) error {
	if s.opts.Format != "nginx" && s.opts.Format != "haproxy" {
		return nil
	}
	for _, e := range p.Add {
		if e.Direction != plan.Ingress {
			return fmt.Errorf("%s: format %s lists who may connect in, and set %s is egress; route only ingress sets here (sets=...)", s.Name(), s.opts.Format, e.Set)
		}
	}
	return nil
}

// Name identifies the sink in plans.
func (s *Sink) Name() string { return "template:" + s.opts.Path }

// Files is the one file this sink writes.
func (s *Sink) Files() []string { return []string{s.opts.Path} }

// Current reads the manifest back. A file without our header is refused:
// overwriting someone's nginx config would be worse than failing.
func (s *Sink) Current(ctx context.Context) (plan.State, error) {
	// The file is read twice from one open file, for its manifest and to
	// compare it with its render, and never held whole: at a million
	// entries it is 70 MB.
	f, err := regularfile.Open(s.opts.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return plan.State{}, nil
	}
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), unwrapPath(err))
	}
	defer f.Close()
	entries, unlabelled, err := s.parseManifest(f)
	if err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), err)
	}
	st := plan.State{Owned: entries, Unlabelled: unlabelled}
	if len(unlabelled) > 0 {
		st.Drift = append(st.Drift, fmt.Sprintf("%d manifest entries name no set (hand-edited); every routed set holds them until the manifest is rewritten", len(unlabelled)))
		return st, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return plan.State{}, fmt.Errorf("%s: %w", s.Name(), unwrapPath(err))
	}
	same, err := s.renders(entries, f)
	if err != nil {
		return plan.State{}, err
	}
	if !same {
		st.Drift = append(st.Drift, "file differs from its entries (hand-edited, or the format or template changed); rewrite")
	}
	return st, nil
}

// Apply renders what the plan leaves into the new file as it goes, checks
// it, replaces the old file atomically and reloads the reader.
func (s *Sink) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	pf, err := sink.NewPendingFile(s.opts.Path)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	defer pf.Cleanup()
	fw := &fileWriter{pf: pf}
	if err := s.renderTo(fw, p.Runs()); err != nil {
		if fw.err != nil {
			return fmt.Errorf("%s: %w", s.Name(), fw.err)
		}
		return err
	}
	preCheck := s.opts.Check.Has("{}")
	if preCheck {
		if err := s.command(ctx, "check", s.opts.Check, pf.TempName()); err != nil {
			return fmt.Errorf("%s: %w; old file kept", s.Name(), err)
		}
	}
	// A check of the file in place, or a reload, may fail after the
	// replace: the old file is kept aside, copied, to be put back.
	var old *sink.PendingFile
	hadOld := false
	if len(s.opts.Reload) > 0 || len(s.opts.Check) > 0 && !preCheck {
		if old, hadOld, err = s.keepOld(); err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		if old != nil {
			defer old.Cleanup()
		}
	}
	if err := pf.Replace(); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	if len(s.opts.Check) > 0 && !preCheck {
		if err := s.command(ctx, "check", s.opts.Check, s.opts.Path); err != nil {
			return s.restore(err, old, hadOld, "old file restored")
		}
	}
	if len(s.opts.Reload) > 0 {
		if err := s.command(ctx, "reload", s.opts.Reload, s.opts.Path); err != nil {
			return s.restore(err, old, hadOld, "old file restored, the next run retries")
		}
	}
	return nil
}

// keepOld copies the current file, when there is one, into a pending file
// beside it, which restore renames back over a rejected new file.
func (s *Sink) keepOld() (*sink.PendingFile, bool, error) {
	f, err := regularfile.Open(s.opts.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unwrapPath(err)
	}
	defer f.Close()
	old, err := sink.NewPendingFile(s.opts.Path)
	if err != nil {
		return nil, false, err
	}
	if _, err := io.Copy(&fileWriter{pf: old}, f); err != nil {
		old.Cleanup()
		return nil, false, unwrapPath(err)
	}
	return old, true, nil
}

// fileWriter writes to a pending file, naming the final path in errors.
type fileWriter struct {
	pf  *sink.PendingFile
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err == nil {
		w.err = w.pf.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// restore puts the previous file back after a failed check or reload, so
// the file on disk stays what the running service was last given.
func (s *Sink) restore(cause error, old *sink.PendingFile, hadOld bool, what string) error {
	var err error
	if hadOld {
		err = old.Replace()
	} else {
		// The file the write created, not a symlink that led to it.
		var real string
		if real, err = sink.ResolveFile(s.opts.Path); err == nil {
			err = os.Remove(real)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w; restoring the old file failed too: %v", s.Name(), cause, unwrapPath(err))
	}
	return fmt.Errorf("%s: %w; %s", s.Name(), cause, what)
}

// command runs check or reload with "{}" replaced by path.
func (s *Sink) command(ctx context.Context, what string, c sink.Command, path string) error {
	if _, err := s.run(ctx, c.Argv(path)); err != nil {
		return fmt.Errorf("%s failed: %w", what, err)
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
