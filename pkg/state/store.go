package state

import "context"

// Store is where the state lives between runs: a file in the state
// directory (FileStore), or an object in the cluster the runs protect
// (pkg/state/kubestate).
type Store interface {
	// Load reads the state. A missing state is an empty one. A state that
	// cannot be used comes back empty with a *CorruptError, a warning; any
	// other error means the state could not be read, and the run stops.
	Load(ctx context.Context) (*File, error)
	// Save writes what Load read, changed, and writes nothing when nothing
	// changed.
	Save(ctx context.Context, f *File) error
}

// FileStore keeps the state in a file and the clock file next to it.
type FileStore struct{ Path string }

func (s FileStore) Load(context.Context) (*File, error)   { return Load(s.Path) }
func (s FileStore) Save(_ context.Context, f *File) error { return f.Save(s.Path) }

// Decode reads a state and its clock as Load reads them from files, with
// the same checks: for a state kept somewhere else, read back as untrusted
// as a file is.
func Decode(data, clock []byte) (*File, error) { return decode(data, clock) }

// Encode gives the bytes Save would write: the state and the clock.
func (f *File) Encode() (data, clock []byte, err error) { return f.encode() }
