// Package kubeobj is what the sinks that own one whole Kubernetes object
// share: finding the cluster, the ownership marks, the size limits the
// server enforces, and the write itself.
//
// The write is the subtle part. An object absent at read is created with a
// plain Create, so one another tool made in between is refused, not taken
// over (a forced server-side apply would have merged into it). Fields a
// Create sets belong to an Update manager, which a later apply cannot drop,
// so the created object's fields are then handed to the Apply manager
// (csaupgrade, a JSON patch guarded by the resourceVersion). Every later
// write is a forced server-side apply by that manager, conditioned on the
// resourceVersion read, so it removes what it no longer sends and never
// overwrites an object changed since the read.
package kubeobj

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/csaupgrade"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// Metadata the sinks own an object by.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "pdsafelist"
	OwnerAnnot     = "pdsafelist.io/owner"
	// SetsAnnot records which set each entry belongs to.
	SetsAnnot = "pdsafelist.io/sets"
	// FieldManager is the manager of our fields.
	FieldManager = "pdsafelist"
)

// Limits the server enforces, checked before a write.
const (
	// MaxAnnotations is the API server's limit on the total size of an
	// object's annotations, keys and values (apimachinery's
	// TotalAnnotationSizeLimitB).
	MaxAnnotations = 256 * 1024
	// MaxObject is ours: etcd refuses a request over 1.5 MiB (its
	// default --max-request-bytes), which carries the object with its
	// managed fields and key, and the API server a body over 3 MiB. 1 MiB
	// of JSON leaves room for both.
	MaxObject = 1024 * 1024
)

// RESTConfig finds the cluster as kubectl does (clientcmd's loading
// rules): kubeconfig when given, else KUBECONFIG, else ~/.kube/config,
// else the pod's service account.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// Clientset is the typed client for the cluster RESTConfig finds.
func Clientset(kubeconfig, context string) (kubernetes.Interface, error) {
	cfg, err := RESTConfig(kubeconfig, context)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = FieldManager
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cs, nil
}

// Marks are the label and annotations that make an object ours.
func Marks(owner string) (labels, annotations map[string]string) {
	return map[string]string{ManagedByLabel: ManagedBy}, map[string]string{OwnerAnnot: owner}
}

// CheckOwner refuses an object another tool or installation made. what
// names it for people, e.g. "NetworkPolicy payments/hooks".
func CheckOwner(sinkName, what string, obj metav1.Object, owner string) error {
	if obj.GetLabels()[ManagedByLabel] != ManagedBy {
		return fmt.Errorf("%s: %s exists without label %s=%s; refusing to change an object pdsafelist did not create (delete it or pick another name)",
			sinkName, what, ManagedByLabel, ManagedBy)
	}
	if o, ok := obj.GetAnnotations()[OwnerAnnot]; ok && o != owner {
		return fmt.Errorf("%s: %s belongs to owner id %q, not %q; refusing to change it", sinkName, what, o, owner)
	}
	return nil
}

// Read is what Current saw of the object, which Apply and Check need:
// keep it in the plan's snapshot.
type Read struct {
	// ResourceVersion is empty when the object did not exist.
	ResourceVersion string
	// Upgrade is the JSON patch that hands fields still held by our
	// Update manager to our Apply manager, when a first write was cut
	// short between its create and its upgrade; nil otherwise.
	Upgrade []byte
	// Others is the size of the annotations we do not write, which the
	// server counts with ours.
	Others int
}

// ReadOf is Read for an object just fetched.
func ReadOf(obj runtime.Object) (Read, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return Read{}, err
	}
	up, err := csaupgrade.UpgradeManagedFieldsPatch(obj, sets.New(FieldManager), FieldManager)
	if err != nil {
		return Read{}, fmt.Errorf("managed fields: %w", err)
	}
	r := Read{ResourceVersion: m.GetResourceVersion(), Upgrade: up}
	for k, v := range m.GetAnnotations() {
		if k != OwnerAnnot && k != SetsAnnot {
			r.Others += len(k) + len(v)
		}
	}
	return r, nil
}

// Client is the part of a resource's client a write uses; a typed client
// fits as it is, a dynamic one through a small adapter.
type Client[T runtime.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// ErrExists: the object was absent at read and exists now.
var ErrExists = errors.New("created by someone else since it was read; nothing written")

// ErrChanged: the object changed since it was read.
var ErrChanged = errors.New("changed since it was read; nothing written, the next run plans again")

// Write stores obj, whose apiVersion and kind are set, as read saw the
// target: created when it was absent, else applied over the version read.
// A failure is one line; errors.Is tells ErrExists and ErrChanged apart.
func Write[T runtime.Object](ctx context.Context, c Client[T], name string, obj T, read Read) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	if read.ResourceVersion == "" {
		created, err := c.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			return ErrExists
		}
		if err != nil {
			return &callError{"create", err}
		}
		up, err := csaupgrade.UpgradeManagedFieldsPatch(created, sets.New(FieldManager), FieldManager)
		if err == nil && up != nil {
			_, err = c.Patch(ctx, name, types.JSONPatchType, up, metav1.PatchOptions{})
		}
		if err != nil {
			// The object is ours and whole; the next read finds the
			// fields still to hand over and Apply retries.
			return &callError{"created; handing its fields to server-side apply failed, the next run retries", err}
		}
		return nil
	}
	rv := read.ResourceVersion
	if read.Upgrade != nil {
		out, err := c.Patch(ctx, name, types.JSONPatchType, read.Upgrade, metav1.PatchOptions{})
		if apierrors.IsConflict(err) {
			return ErrChanged
		}
		if err != nil {
			return &callError{"hand fields to server-side apply", err}
		}
		um, err := meta.Accessor(out)
		if err != nil {
			return err
		}
		rv = um.GetResourceVersion()
	}
	m.SetResourceVersion(rv)
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	force := true
	_, err = c.Patch(ctx, name, types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
	if apierrors.IsConflict(err) {
		return ErrChanged
	}
	if err != nil {
		return &callError{"apply", err}
	}
	return nil
}

// callError is a failed call on one line, its cause kept for
// apierrors.IsForbidden and the like.
type callError struct {
	op  string
	err error
}

func (e *callError) Error() string { return e.op + ": " + oneline.Error(e.err) }
func (e *callError) Unwrap() error { return e.err }

// CheckSize refuses, before any write, an object the server would refuse
// for its size; entries is how many entries it would hold, for the
// message.
func CheckSize(sinkName string, obj runtime.Object, entries int, read Read) error {
	return checkSize(sinkName, obj, entries, read, MaxObject, MaxAnnotations)
}

func checkSize(sinkName string, obj runtime.Object, entries int, read Read, maxObject, maxAnnotations int) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	ann := read.Others
	for k, v := range m.GetAnnotations() {
		ann += len(k) + len(v)
	}
	if ann > maxAnnotations {
		return &plan.GuardError{Guard: plan.GuardKubeObjectSize, Sink: sinkName, Msg: fmt.Sprintf(
			"%d entries need %d bytes of annotations (the record %s), more than the API server's limit of %d; route fewer sets or addresses to this object",
			entries, ann, SetsAnnot, maxAnnotations)}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if len(data) > maxObject {
		return &plan.GuardError{Guard: plan.GuardKubeObjectSize, Sink: sinkName, Msg: fmt.Sprintf(
			"%d entries make a %d-byte object, more than the %d bytes kept under etcd's request limit; route fewer sets or addresses to this object",
			entries, len(data), maxObject)}
	}
	return nil
}

// Forbidden is the hint for a refusal by RBAC: what to grant, and the
// shipped file that grants it.
func Forbidden(err error, grant, file string) string {
	if apierrors.IsForbidden(err) {
		return fmt.Sprintf("; grant %s (%s)", grant, file)
	}
	return ""
}
