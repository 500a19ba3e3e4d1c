// Package kubestate keeps the retention state in a ConfigMap of the
// cluster pdsafelist runs on, so a Deployment needs no volume that
// outlives its pods.
//
// A ConfigMap rather than annotations on the leader-election Lease: the
// Lease is renewed every few seconds by the elector, which rewrites the
// whole object from its own record, and its annotations are limited to
// 256 KiB in total; a ConfigMap holds up to 1 MiB, is written once per run
// (only when the state changed), and can be granted to the writer alone.
//
// Two writers can never both win: Save updates the object with the
// resourceVersion Load read, so the server refuses the second writer of
// one read with a conflict, and creates when Load found nothing, so the
// second creator gets AlreadyExists. Neither overwrites; the run reports
// the conflict and the next run reads again.
//
// What the ConfigMap holds is untrusted, as the state file is: it is
// decoded by the same code with the same limits, and a ConfigMap of the
// name that pdsafelist did not create (no managed-by label) is refused,
// never read nor written.
package kubestate

import (
	"context"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreclient "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/pdsafelist/pdsafelist/pkg/state"
)

// Keys of the ConfigMap's data, named as the files they stand for.
const (
	DataKey  = state.FileName
	ClockKey = state.ClockFileName
)

// Ownership metadata, as the Kubernetes sinks mark their objects.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "pdsafelist"
)

// MaxBytes is what the API server lets a ConfigMap hold: its keys and
// values together (corev1.MaxSecretSize, which ConfigMap validation uses).
const MaxBytes = corev1.MaxSecretSize

// ErrConflict is a save refused because another writer changed (or
// created) the ConfigMap after this run read it.
var ErrConflict = errors.New("changed by another writer since this run read it; not overwritten")

// API is the part of the ConfigMap client the store uses.
type API interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ConfigMap, error)
	Create(ctx context.Context, cm *corev1.ConfigMap, opts metav1.CreateOptions) (*corev1.ConfigMap, error)
	Update(ctx context.Context, cm *corev1.ConfigMap, opts metav1.UpdateOptions) (*corev1.ConfigMap, error)
}

var _ API = coreclient.ConfigMapInterface(nil)

// Store is one run's view of the ConfigMap: Load reads it and remembers
// the version read, Save writes over exactly that version.
type Store struct {
	api             API
	namespace, name string
	loaded          bool
	// read is the object as loaded; nil when there was none.
	read *corev1.ConfigMap
}

var _ state.Store = (*Store)(nil)

// New returns a store for the ConfigMap name in namespace; api is a
// ConfigMap client of that namespace.
func New(api API, namespace, name string) *Store {
	return &Store{api: api, namespace: namespace, name: name}
}

func (s *Store) String() string { return "configmap " + s.namespace + "/" + s.name }

// Load reads the ConfigMap. None is an empty state; one whose content does
// not decode is an empty state and a *state.CorruptError (the next save
// replaces it); one we did not create, or a failed read, is an error.
func (s *Store) Load(ctx context.Context) (*state.File, error) {
	cm, err := s.api.Get(ctx, s.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s.loaded, s.read = true, nil
		return state.New(), nil
	case err != nil:
		return nil, s.fail("read", err)
	}
	if cm.Labels[ManagedByLabel] != ManagedBy {
		return nil, fmt.Errorf("state %s: exists without the label %s=%s, so pdsafelist did not create it; refusing to read or overwrite it (delete it or name another --state-configmap)", s, ManagedByLabel, ManagedBy)
	}
	s.loaded, s.read = true, cm
	if n := size(cm); n > MaxBytes {
		return state.New(), s.corrupt(fmt.Errorf("holds %d bytes, more than a ConfigMap may", n))
	}
	if len(cm.BinaryData) > 0 {
		return state.New(), s.corrupt(fmt.Errorf("has binaryData, which pdsafelist never writes"))
	}
	data, ok := cm.Data[DataKey]
	if !ok {
		return state.New(), nil
	}
	f, err := state.Decode([]byte(data), []byte(cm.Data[ClockKey]))
	if err != nil {
		return state.New(), s.corrupt(err)
	}
	return f, nil
}

func (s *Store) corrupt(err error) error {
	return &state.CorruptError{Path: s.String(), Err: err, InPlace: true}
}

// Save writes f over the version Load read: created when Load found
// none, updated otherwise, untouched when its data would not change. A
// state larger than a ConfigMap holds is refused before anything is sent.
func (s *Store) Save(ctx context.Context, f *state.File) error {
	if !s.loaded {
		return fmt.Errorf("state %s: save before load", s)
	}
	data, clock, err := f.Encode()
	if err != nil {
		return fmt.Errorf("state %s: %w", s, err)
	}
	want := map[string]string{DataKey: string(data), ClockKey: string(clock)}
	var cm *corev1.ConfigMap
	if s.read == nil {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: s.name, Namespace: s.namespace,
			Labels: map[string]string{ManagedByLabel: ManagedBy},
		}}
	} else {
		cm = s.read.DeepCopy()
		if maps.Equal(pick(cm.Data, DataKey, ClockKey), want) {
			return nil
		}
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	maps.Copy(cm.Data, want)
	if n := size(cm); n > MaxBytes {
		return fmt.Errorf("state %s: %d bytes, more than a ConfigMap holds (%d); not written: keep the state on a volume instead (--state-dir)", s, n, MaxBytes)
	}
	var out *corev1.ConfigMap
	if s.read == nil {
		out, err = s.api.Create(ctx, cm, metav1.CreateOptions{FieldManager: ManagedBy})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("state %s: created by another writer since this run found none: %w", s, ErrConflict)
		}
	} else {
		out, err = s.api.Update(ctx, cm, metav1.UpdateOptions{FieldManager: ManagedBy})
		if apierrors.IsConflict(err) {
			return fmt.Errorf("state %s: resourceVersion %s %w", s, s.read.ResourceVersion, ErrConflict)
		}
	}
	if err != nil {
		return s.fail("write", err)
	}
	s.read = out
	return nil
}

// fail names the store and, when RBAC refused, what to grant.
func (s *Store) fail(op string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("state %s: %s forbidden: grant get, update on this ConfigMap and create on configmaps in %s (scripts/k8s/deployment.yaml has the Role): %w", s, op, s.namespace, err)
	}
	return fmt.Errorf("state %s: %s: %w", s, op, err)
}

// size counts a ConfigMap as the API server's validation does: every
// key and value of data and binaryData.
func size(cm *corev1.ConfigMap) int {
	n := 0
	for k, v := range cm.Data {
		n += len(k) + len(v)
	}
	for k, v := range cm.BinaryData {
		n += len(k) + len(v)
	}
	return n
}

func pick(m map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}
