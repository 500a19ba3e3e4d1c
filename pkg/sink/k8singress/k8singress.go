// Package k8singress keeps one allow-list annotation on existing
// networking.k8s.io/v1 Ingresses in sync with the desired sets: by default
// ingress-nginx's nginx.ingress.kubernetes.io/whitelist-source-range, a
// comma-separated list of prefixes.
//
// The sink never creates an Ingress and touches no field but two
// annotations, written by server-side apply under field manager
// "pdsafelist" with the resourceVersion it read as a precondition: the
// allow-list itself and a companion, pdsafelist.io/owns-HASH (HASH names
// the allow-list annotation, so two sinks may own two annotations of one
// Ingress). The companion holds the owner id, the annotation's name and
// which set each prefix belongs to. An Ingress carrying the allow-list
// without the companion, or the companion of another owner id, is refused
// untouched; an Ingress with neither is taken, since the user named or
// selected it.
//
// Everything read back under the companion is untrusted: the allow-list
// is parsed as ingress-nginx parses it, the companion strictly. When the
// companion no longer parses, the allow-list's prefixes are read back
// unlabelled (plan.State.Unlabelled), so a hand edit never turns into
// removals, and the next apply writes both again.
package k8singress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	networkingclient "k8s.io/client-go/kubernetes/typed/networking/v1"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubenames"
	"github.com/pdsafelist/pdsafelist/pkg/sink/kubeobj"
)

const (
	// Type is the sink's registry name.
	Type = "k8s-ingress-annotation"
	// DefaultAnnotation is ingress-nginx's allow-list.
	DefaultAnnotation = "nginx.ingress.kubernetes.io/whitelist-source-range"
	// CompanionPrefix starts the companion annotation's key.
	CompanionPrefix = "pdsafelist.io/owns-"
	// DefaultMaxPrefixes bounds the list: ingress-nginx itself takes any
	// length (it splits on commas), but writes one allow line per prefix
	// into every location of the Ingress.
	DefaultMaxPrefixes = 1000
	maxMaxPrefixes     = 10000
	// ourPrefix is the annotation namespace the sink keeps for itself.
	ourPrefix = "pdsafelist.io/"
)

// shadowedBy names, for an annotation, one the controller reads first:
// ingress-nginx takes allowlist-source-range over its older alias, so a
// hand-written allowlist would make ours dead letter.
var shadowedBy = map[string]string{
	DefaultAnnotation: "nginx.ingress.kubernetes.io/allowlist-source-range",
}

// Options are the sink's settings (config, or --sink
// k8s-ingress-annotation:NAMESPACE/NAME, or NAMESPACE?selector=k=v).
type Options struct {
	// Ingress is NAMESPACE/NAME (one object, which must exist), or
	// NAMESPACE with Selector.
	Ingress string `yaml:"ingress"`
	// Selector is k=v,... labels picking the Ingresses of the namespace;
	// one that matches none is a warning, not an error.
	Selector string `yaml:"selector"`
	// Annotation is the allow-list's key, ingress-nginx's by default;
	// another controller's comma-separated list works too (e.g.
	// haproxy.org/allow-list). Keys under pdsafelist.io/ are refused.
	Annotation string `yaml:"annotation"`
	// MaxPrefixes refuses a plan whose list would be longer (1 to 10000).
	MaxPrefixes int `yaml:"max_prefixes"`
	// Kubeconfig and Context pick the cluster as kubectl does: the file
	// given, else KUBECONFIG, else ~/.kube/config, else in-cluster.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// OwnerID overrides the global owner_id for these Ingresses.
	OwnerID string `yaml:"owner_id"`
}

// DefaultOptions are the options a spec leaves out.
func DefaultOptions() Options {
	return Options{Annotation: DefaultAnnotation, MaxPrefixes: DefaultMaxPrefixes}
}

// Factory registers the k8s-ingress-annotation sink type.
var Factory = sink.Factory{
	ArgKey:  "ingress",
	Help:    Type + ":NAMESPACE/NAME|NAMESPACE?selector=k=v  allow-list annotation on existing Kubernetes Ingresses (default " + DefaultAnnotation + "), set by server-side apply; ingress sets only, an Ingress is never created (options: selector=k=v,..., annotation=KEY, max_prefixes, kubeconfig=FILE, context=NAME, owner_id)",
	Options: func() any { return DefaultOptions() },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := DefaultOptions()
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if _, err := o.check(spec.Origin, env); err != nil {
			return nil, err
		}
		// The cluster is found at the first call: opening checks options.
		ns, _, _ := strings.Cut(o.Ingress, "/")
		connect := func() (API, error) {
			cs, err := kubeobj.Clientset(o.Kubeconfig, o.Context)
			if err != nil {
				return nil, err
			}
			return cs.NetworkingV1().Ingresses(ns), nil
		}
		return New(&lazyAPI{connect: sync.OnceValues(connect)}, o, spec.Origin, env)
	},
}

// API is the part of the Ingress client the sink uses.
type API interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*networkingv1.Ingress, error)
	List(ctx context.Context, opts metav1.ListOptions) (*networkingv1.IngressList, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*networkingv1.Ingress, error)
}

var _ API = networkingclient.IngressInterface(nil)

// lazyAPI builds the client at its first call.
type lazyAPI struct{ connect func() (API, error) }

func (l *lazyAPI) Get(ctx context.Context, name string, opts metav1.GetOptions) (*networkingv1.Ingress, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Get(ctx, name, opts)
}

func (l *lazyAPI) List(ctx context.Context, opts metav1.ListOptions) (*networkingv1.IngressList, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.List(ctx, opts)
}

func (l *lazyAPI) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*networkingv1.Ingress, error) {
	api, err := l.connect()
	if err != nil {
		return nil, err
	}
	return api.Patch(ctx, name, pt, data, opts, sub...)
}

func (o Options) check(origin string, env sink.Env) (owner string, err error) {
	if err := sink.CheckOptions(origin, o); err != nil {
		return "", err
	}
	if err := sink.CheckText(origin, "owner_id", env.OwnerID); err != nil {
		return "", err
	}
	ns, name, named := strings.Cut(o.Ingress, "/")
	switch {
	case !kubenames.DNSLabel.MatchString(ns):
		return "", fmt.Errorf("%s: ingress %q: want NAMESPACE/NAME, or NAMESPACE with selector=KEY=VALUE (a namespace is lower-case letters, digits and -)", origin, o.Ingress)
	case named && o.Selector != "":
		return "", fmt.Errorf("%s: ingress %q names one Ingress; give NAMESPACE alone with selector=", origin, o.Ingress)
	case named && (len(name) > 253 || !kubenames.Subdomain.MatchString(name)):
		return "", fmt.Errorf("%s: ingress %q: the name must be lower-case letters, digits, - and .", origin, o.Ingress)
	case !named && strings.TrimSpace(o.Selector) == "":
		return "", fmt.Errorf("%s: ingress %q: want NAMESPACE/NAME, or NAMESPACE with selector=KEY=VALUE", origin, o.Ingress)
	}
	if _, err := kubenames.ParseSelector(o.Selector); err != nil {
		return "", fmt.Errorf("%s: selector: %w", origin, err)
	}
	if a := o.Annotation; a != "" {
		if errs := validation.IsQualifiedName(a); len(errs) > 0 {
			return "", fmt.Errorf("%s: annotation %q: not an annotation key: %s", origin, a, oneline.String(strings.Join(errs, "; ")))
		}
		if strings.HasPrefix(a, ourPrefix) {
			return "", fmt.Errorf("%s: annotation %q: %s keys are pdsafelist's own", origin, a, ourPrefix)
		}
	}
	if o.MaxPrefixes < 0 || o.MaxPrefixes > maxMaxPrefixes {
		return "", fmt.Errorf("%s: max_prefixes %d: want 1 to %d", origin, o.MaxPrefixes, maxMaxPrefixes)
	}
	owner = env.OwnerID
	if o.OwnerID != "" {
		owner = o.OwnerID
	}
	return owner, nil
}

// Annotator is the sink.
type Annotator struct {
	api        API
	namespace  string
	name       string // empty with a selector
	selector   string // canonical k=v,... sorted
	annotation string
	companion  string
	max        int
	owner      string
	log        *slog.Logger
}

var (
	_ sink.Shaper  = (*Annotator)(nil)
	_ sink.Checker = (*Annotator)(nil)
)

// New returns the sink for a client scoped to the namespace; tests pass
// one that counts and fails writes.
func New(api API, o Options, origin string, env sink.Env) (*Annotator, error) {
	owner, err := o.check(origin, env)
	if err != nil {
		return nil, err
	}
	ns, name, _ := strings.Cut(o.Ingress, "/")
	a := &Annotator{api: api, namespace: ns, name: name, owner: owner, annotation: o.Annotation, max: o.MaxPrefixes, log: env.Logger}
	if a.annotation == "" {
		a.annotation = DefaultAnnotation
	}
	if a.max == 0 {
		a.max = DefaultMaxPrefixes
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.companion = Companion(a.annotation)
	if sel, _ := kubenames.ParseSelector(o.Selector); len(sel) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(sel)) {
			parts = append(parts, k+"="+sel[k])
		}
		a.selector = strings.Join(parts, ",")
	}
	return a, nil
}

// Companion is the key of the annotation that records who owns
// annotation: a hash, as an annotation key holds no second "/".
func Companion(annotation string) string {
	sum := sha256.Sum256([]byte(annotation))
	return CompanionPrefix + hex.EncodeToString(sum[:6])
}

// Name identifies the target in plans, in --sink syntax.
func (a *Annotator) Name() string {
	var opts []string
	if a.selector != "" {
		opts = append(opts, "selector="+a.selector)
	}
	if a.annotation != DefaultAnnotation {
		opts = append(opts, "annotation="+a.annotation)
	}
	n := Type + ":" + a.namespace
	if a.name != "" {
		n += "/" + a.name
	}
	if len(opts) > 0 {
		n += "?" + strings.Join(opts, "&")
	}
	return n
}

// object is one Ingress as Current read it.
type object struct {
	name            string
	resourceVersion string
	// value and record are our two annotations as read; has* say they
	// were there at all.
	value, record       string
	hasValue, hasRecord bool
	// others is the size of every other annotation, keys included, as
	// the API server counts it against its limit.
	others int
}

// snapshot is what Current read, sorted by name. Apply writes only the
// Ingresses read, each against its resourceVersion, so one changed or
// handed to someone else since is not overwritten.
type snapshot struct{ objects []object }

// Current reads the Ingresses. An absent named Ingress, or one another
// tool or owner holds the annotation of, is an error; a selector that
// matches none is a warning and an empty state.
func (a *Annotator) Current(ctx context.Context) (plan.State, error) {
	ings, err := a.read(ctx)
	if err != nil {
		return plan.State{}, err
	}
	if len(ings) == 0 {
		// As external-dns treats a filter that selects nothing: nothing
		// to do, said once. Shape then asks for nothing, so the plan is
		// empty rather than adds that could never land.
		a.log.Warn("the selector matches no Ingress; nothing to write", "sink", a.Name(), "namespace", a.namespace, "selector", a.selector)
		return plan.State{Snapshot: snapshot{}}, nil
	}
	var snap snapshot
	var st plan.State
	type reading struct {
		obj   object
		owned []plan.Entry
	}
	var reads []reading
	for _, ing := range ings {
		obj, owned, unlabelled, drift, err := a.readOne(ing)
		if err != nil {
			return plan.State{}, err
		}
		snap.objects = append(snap.objects, obj)
		reads = append(reads, reading{obj, owned})
		st.Owned = append(st.Owned, owned...)
		st.Unlabelled = append(st.Unlabelled, unlabelled...)
		st.Drift = append(st.Drift, drift...)
	}
	st.Owned = slices.Compact(plan.Sort(st.Owned))
	// A prefix one Ingress's record names is not unlabelled because
	// another's record broke: the readable record says whose it is.
	held := map[netip.Prefix]bool{}
	for _, e := range st.Owned {
		held[e.Prefix] = true
	}
	st.Unlabelled = slices.DeleteFunc(slices.Compact(plan.Sort(st.Unlabelled)), func(e plan.Entry) bool { return held[e.Prefix] })
	// Ingresses that hold less than the others (a new one selected, or
	// one an apply failed on) are brought in line.
	if len(st.Drift) == 0 {
		value, record := a.render(st.Owned)
		for _, r := range reads {
			untaken := !r.obj.hasValue && !r.obj.hasRecord
			if untaken && len(st.Owned) == 0 {
				continue // nothing to bring it in line with
			}
			if r.obj.value != value || r.obj.record != record {
				st.Drift = append(st.Drift, fmt.Sprintf("Ingress %s/%s holds %d of the %d entries the selected Ingresses hold; rewrite", a.namespace, r.obj.name, len(r.owned), len(st.Owned)))
			}
		}
	}
	st.Snapshot = snap
	return st, nil
}

// read gets the named Ingress, or lists the selected ones, sorted.
func (a *Annotator) read(ctx context.Context) ([]networkingv1.Ingress, error) {
	if a.name != "" {
		ing, err := a.api.Get(ctx, a.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s: Ingress %s/%s not found; this sink annotates an existing Ingress and never creates one", a.Name(), a.namespace, a.name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: get: %s%s", a.Name(), oneline.Error(err), a.hint(err))
		}
		return []networkingv1.Ingress{*ing}, nil
	}
	var out []networkingv1.Ingress
	opts := metav1.ListOptions{LabelSelector: a.selector, Limit: 500}
	for {
		list, err := a.api.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: list: %s%s", a.Name(), oneline.Error(err), a.hint(err))
		}
		out = append(out, list.Items...)
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	slices.SortFunc(out, func(x, y networkingv1.Ingress) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// readOne reads one Ingress's two annotations; err refuses the sink.
func (a *Annotator) readOne(ing networkingv1.Ingress) (obj object, owned, unlabelled []plan.Entry, drift []string, err error) {
	where := fmt.Sprintf("Ingress %s/%s", a.namespace, ing.Name)
	obj = object{name: ing.Name, resourceVersion: ing.ResourceVersion}
	for k, v := range ing.Annotations {
		switch k {
		case a.annotation:
			obj.value, obj.hasValue = v, true
		case a.companion:
			obj.record, obj.hasRecord = v, true
		default:
			obj.others += len(k) + len(v)
		}
	}
	if s, ok := shadowedBy[a.annotation]; ok && ing.Annotations[s] != "" {
		return obj, nil, nil, nil, fmt.Errorf("%s: %s carries %s, which the controller reads instead of %s; refusing to set an allow-list it would ignore (remove %s, or set annotation=%s)",
			a.Name(), where, s, a.annotation, s, s)
	}
	if !obj.hasRecord {
		if obj.hasValue {
			return obj, nil, nil, nil, fmt.Errorf("%s: %s already has %s without pdsafelist's %s; refusing to overwrite an allow-list pdsafelist did not write (remove it by hand to hand it over)",
				a.Name(), where, a.annotation, a.companion)
		}
		// Neither: the user named or selected it, and it is ours to set.
		return obj, nil, nil, nil, nil
	}
	rec, ok := decodeRecord(obj.record, a.annotation)
	if ok && rec.Owner != a.owner {
		return obj, nil, nil, nil, fmt.Errorf("%s: %s: %s belongs to pdsafelist owner id %q, not %q; refusing to change it",
			a.Name(), where, a.annotation, oneline.String(rec.Owner), a.owner)
	}
	if !ok {
		if other, found := recordOwner(obj.record); found && other != a.owner {
			return obj, nil, nil, nil, fmt.Errorf("%s: %s: %s belongs to pdsafelist owner id %q, not %q; refusing to change it",
				a.Name(), where, a.annotation, oneline.String(other), a.owner)
		}
	}
	prefixes, bad, parsed := parseValue(obj.value)
	if !obj.hasValue {
		drift = append(drift, fmt.Sprintf("%s: %s is missing (removed by hand?); the Ingress admits everyone until it is rewritten", where, a.annotation))
	} else if !parsed {
		drift = append(drift, fmt.Sprintf("%s: %s holds %q, which ingress-nginx cannot parse; rewrite", where, a.annotation, oneline.String(bad)))
	}
	if !ok {
		for _, p := range prefixes {
			unlabelled = append(unlabelled, plan.Entry{Prefix: p})
		}
		drift = append(drift, fmt.Sprintf("%s: %s no longer maps the %d prefixes of %s to sets; every routed set holds them until it is rewritten",
			where, a.companion, len(prefixes), a.annotation))
		return obj, nil, unlabelled, drift, nil
	}
	// The allow-list is what is enforced: a recorded entry counts only
	// while its prefix is listed, and a listed prefix the record does not
	// name is held by every routed set.
	listed := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		listed[p] = true
	}
	named := map[netip.Prefix]bool{}
	for _, e := range rec.entries() {
		named[e.Prefix] = true
		if listed[e.Prefix] {
			owned = append(owned, e)
		}
	}
	for _, p := range prefixes {
		if !named[p] {
			unlabelled = append(unlabelled, plan.Entry{Prefix: p})
		}
	}
	if value, record := a.render(rec.entries()); len(drift) == 0 && (value != obj.value || record != obj.record) {
		drift = append(drift, fmt.Sprintf("%s: %s differs from its record in %s (edited by hand); rewrite", where, a.annotation, a.companion))
	}
	return obj, owned, unlabelled, drift, nil
}

// Shape drops ports, protocol and direction, which an allow-list does not
// hold. Egress sets are refused: the annotation says who may connect in.
// With no Ingress selected it asks for nothing.
func (a *Annotator) Shape(desired []plan.DesiredSet, current plan.State) ([]plan.DesiredSet, error) {
	snap, read := current.Snapshot.(snapshot)
	none := read && len(snap.objects) == 0
	var refused error
	out := make([]plan.DesiredSet, 0, len(desired))
	for _, d := range desired {
		if d.Direction == plan.Egress && refused == nil {
			refused = fmt.Errorf("%s: set %s is egress, and an Ingress allow-list says who may connect in; route only ingress sets here (sets=...)", a.Name(), d.Name)
		}
		c := plan.DesiredSet{Name: d.Name, Ports: []uint16{0}, Frozen: d.Frozen, Reason: d.Reason}
		if !none {
			c.Prefixes, c.LastKnown = bare(d.Prefixes), bare(d.LastKnown)
		}
		out = append(out, c)
	}
	return out, refused
}

// bare is ps masked, without /0, which no allow-list should hold.
func bare(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.IsValid() && p.Bits() > 0 {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Check refuses, before anything is written, a list ingress-nginx would
// read as no restriction (empty), one longer than max_prefixes, and one
// that would take an Ingress's annotations past the API server's limit.
func (a *Annotator) Check(p plan.SinkPlan) error {
	snap, _ := p.Snapshot.(snapshot)
	if len(snap.objects) == 0 || !p.HasChanges() {
		return nil
	}
	result := p.Result()
	n := len(prefixesOf(result))
	if n == 0 {
		return &plan.GuardError{Guard: plan.GuardIngressAnnotation, Sink: p.Sink, Msg: fmt.Sprintf(
			"%s would be empty, which ingress-nginx reads as no restriction at all; refusing to open the Ingress to everyone (route a set with prefixes, or remove the annotation by hand)", a.annotation)}
	}
	if n > a.max {
		return &plan.GuardError{Guard: plan.GuardIngressAnnotation, Sink: p.Sink, Msg: fmt.Sprintf(
			"%s would list %d prefixes, more than max_prefixes %d (each is an allow line in every location of the Ingress); raise max_prefixes or route fewer sets", a.annotation, n, a.max)}
	}
	value, record := a.render(result)
	for _, o := range snap.objects {
		size := o.others + len(a.annotation) + len(value) + len(a.companion) + len(record)
		if size > apivalidation.TotalAnnotationSizeLimitB {
			return &plan.GuardError{Guard: plan.GuardIngressAnnotation, Sink: p.Sink, Msg: fmt.Sprintf(
				"with %d prefixes the annotations of Ingress %s/%s would take %d bytes, more than the API server's %d; route fewer sets", n, a.namespace, o.name, size, apivalidation.TotalAnnotationSizeLimitB)}
		}
	}
	return nil
}

// Apply writes the plan's result to every Ingress read that does not hold
// it yet, one server-side apply each, conditioned on what was read. When
// one fails, those already written get their previous list back, so the
// selected Ingresses do not disagree past the run (a disagreement reads
// back as the union of what they hold, which a re-run's max-delete guard
// would count against it).
func (a *Annotator) Apply(ctx context.Context, p plan.SinkPlan) error {
	if err := sink.CheckPlan(p); err != nil {
		return fmt.Errorf("%s: %w", a.Name(), err)
	}
	snap, ok := p.Snapshot.(snapshot)
	if !ok {
		return fmt.Errorf("%s: plan made without reading the Ingresses; re-run", a.Name())
	}
	result := p.Result()
	if len(snap.objects) > 0 && len(prefixesOf(result)) == 0 {
		// Check refuses this; Apply does not rely on it.
		return fmt.Errorf("%s: refusing to write an empty %s", a.Name(), a.annotation)
	}
	value, record := a.render(result)
	type written struct {
		old             object
		resourceVersion string
	}
	var done []written
	for _, o := range snap.objects {
		if o.hasValue && o.hasRecord && o.value == value && o.record == record {
			continue
		}
		rv, err := a.write(ctx, o.name, o.resourceVersion, value, record)
		if err == nil {
			done = append(done, written{o, rv})
			continue
		}
		where := fmt.Sprintf("Ingress %s/%s", a.namespace, o.name)
		msg := fmt.Sprintf("%s: apply %s: %s%s", a.Name(), where, oneline.Error(err), a.hint(err))
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			msg = fmt.Sprintf("%s: %s changed since it was read; not written, the next run plans again: %s", a.Name(), where, oneline.Error(err))
		}
		var back, failed []string
		for _, w := range slices.Backward(done) {
			// Only a list with its record goes back: an Ingress that
			// had none, or had lost its list, keeps the new one.
			if !w.old.hasValue || !w.old.hasRecord {
				continue
			}
			if _, err := a.write(ctx, w.old.name, w.resourceVersion, w.old.value, w.old.record); err != nil {
				failed = append(failed, w.old.name+" ("+oneline.Error(err)+")")
			} else {
				back = append(back, w.old.name)
			}
		}
		if len(back) > 0 {
			msg += "; put the previous list back on " + strings.Join(back, ", ")
		}
		if len(failed) > 0 {
			msg += "; putting the previous list back failed on " + strings.Join(failed, ", ")
		}
		return errors.New(msg)
	}
	return nil
}

// write sets our two annotations on one Ingress at resourceVersion rv (so
// never creates one) and returns its new resourceVersion.
func (a *Annotator) write(ctx context.Context, name, rv, value, record string) (string, error) {
	data, err := json.Marshal(map[string]any{
		"apiVersion": "networking.k8s.io/v1",
		"kind":       "Ingress",
		"metadata": map[string]any{
			"name": name, "namespace": a.namespace, "resourceVersion": rv,
			"annotations": map[string]string{a.annotation: value, a.companion: record},
		},
	})
	if err != nil {
		return "", err
	}
	force := true
	out, err := a.api.Patch(ctx, name, types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: kubeobj.FieldManager, Force: &force})
	if err != nil {
		return "", err
	}
	return out.ResourceVersion, nil
}

// hint says what a refusal by RBAC needs.
func (a *Annotator) hint(err error) string {
	return kubeobj.Forbidden(err, "get, list and patch on ingresses (networking.k8s.io) in namespace "+a.namespace, "scripts/k8s/rbac-ingress-annotation.yaml")
}

// render is the allow-list and the record for entries: the prefixes
// sorted and comma-separated, and the record as JSON.
func (a *Annotator) render(entries []plan.Entry) (value, record string) {
	ps := prefixesOf(entries)
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	rec := Record{Annotation: a.annotation, Owner: a.owner, Sets: map[string][]string{}}
	for _, e := range entries {
		rec.Sets[e.Set] = append(rec.Sets[e.Set], e.Prefix.String())
	}
	for k, v := range rec.Sets {
		slices.SortFunc(v, func(x, y string) int { return netip.MustParsePrefix(x).Compare(netip.MustParsePrefix(y)) })
		rec.Sets[k] = slices.Compact(v)
	}
	data, _ := json.Marshal(rec)
	return strings.Join(s, ","), string(data)
}

// prefixesOf is the distinct prefixes of entries, sorted.
func prefixesOf(entries []plan.Entry) []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		ps = append(ps, e.Prefix)
	}
	slices.SortFunc(ps, netip.Prefix.Compare)
	return slices.Compact(ps)
}

// Record is the companion annotation's JSON.
type Record struct {
	Annotation string              `json:"annotation"`
	Owner      string              `json:"owner"`
	Sets       map[string][]string `json:"sets"`
}

func (r Record) entries() []plan.Entry {
	var out []plan.Entry
	for set, ps := range r.Sets {
		for _, s := range ps {
			out = append(out, plan.Entry{Set: set, Prefix: netip.MustParsePrefix(s)})
		}
	}
	return slices.Compact(plan.Sort(out))
}

// decodeRecord parses the companion strictly; ok is false when any part
// is malformed, names another annotation, or a set config would refuse.
// A prefix must be written as the sink writes it (masked, canonical).
func decodeRecord(s, annotation string) (Record, bool) {
	var r Record
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() || r.Annotation != annotation || r.Sets == nil {
		return Record{}, false
	}
	for set, ps := range r.Sets {
		if !plan.ValidSetName(set) {
			return Record{}, false
		}
		for _, item := range ps {
			p, err := netip.ParsePrefix(item)
			if err != nil || p != p.Masked() || p.String() != item || p.Bits() == 0 {
				return Record{}, false
			}
		}
	}
	return r, true
}

// recordOwner reads only the owner of a record that does not parse
// whole, so a broken record of another installation is still refused.
func recordOwner(s string) (string, bool) {
	var r struct {
		Owner *string `json:"owner"`
	}
	if err := json.Unmarshal([]byte(s), &r); err != nil || r.Owner == nil {
		return "", false
	}
	return *r.Owner, true
}

// parseValue reads an allow-list as ingress-nginx does: comma-separated,
// spaces trimmed, each a CIDR or a bare address; the prefixes come back
// masked, sorted and distinct. ok is false when an item is neither (an
// empty one too), for which ingress-nginx refuses the whole list; bad is
// the first such item.
func parseValue(s string) (ps []netip.Prefix, bad string, ok bool) {
	if s == "" {
		return nil, "", true
	}
	ok = true
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		p, err := parseItem(item)
		if err != nil {
			if ok {
				bad, ok = item, false
			}
			continue
		}
		ps = append(ps, p)
	}
	slices.SortFunc(ps, netip.Prefix.Compare)
	return slices.Compact(ps), bad, ok
}

func parseItem(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Bits() == 0 {
			return netip.Prefix{}, errors.New("a /0 is no allow-list")
		}
		return p.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, errors.New("not a CIDR or an address")
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}
