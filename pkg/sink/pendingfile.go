package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// PendingFile is a sink's file written beside its final path and renamed
// over it, so a reader sees the old file or the new one, whole. The sink
// owns the file, so it creates a missing parent directory, and every error
// names the final path: the temp file's name means nothing to an operator.
type PendingFile struct {
	path string
	pf   *renameio.PendingFile
}

// NewPendingFile creates path's directory (0755) when it is missing and
// opens a temp file beside path. A file that exists keeps its permissions;
// a new one gets 0644. A path that is a symlink is written through: the
// temp file goes beside the file it names and replaces that, so the link
// stays a link.
func NewPendingFile(path string) (*PendingFile, error) {
	real, err := ResolveFile(path)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(real)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", path, bareError(err))
	}
	// Beside the file, never in $TMPDIR (renameio's default when it is on
	// the same mount): a check= reading the new file finds it where the
	// old one was, and a private /tmp cannot hide it from the checker.
	pf, err := renameio.NewPendingFile(real, renameio.WithTempDir(dir), renameio.WithPermissions(0o644), renameio.WithExistingPermissions())
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, bareError(err))
	}
	return &PendingFile{path: path, pf: pf}, nil
}

// TempName is the temp file's path, in the final path's directory, for a
// check that reads the new file before it replaces the old one.
func (f *PendingFile) TempName() string { return f.pf.Name() }

// Write writes data to the temp file.
func (f *PendingFile) Write(data []byte) error {
	if _, err := f.pf.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.path, bareError(err))
	}
	return nil
}

// Replace syncs the temp file and renames it over the final path.
func (f *PendingFile) Replace() error {
	if err := f.pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replace %s: %w", f.path, bareError(err))
	}
	return nil
}

// Cleanup removes the temp file unless it replaced the final one; it is
// safe to defer after Replace.
func (f *PendingFile) Cleanup() { _ = f.pf.Cleanup() }

// WriteAtomic writes data to path through a PendingFile.
func WriteAtomic(path string, data []byte) error {
	f, err := NewPendingFile(path)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if err := f.Write(data); err != nil {
		return err
	}
	return f.Replace()
}

// maxLinks bounds the symlinks ResolveFile follows, as the kernel's
// ELOOP does.
const maxLinks = 40

// ResolveFile follows the symlinks that path itself is, to the file a
// write through it changes; a link to a file not yet there resolves to
// where it points, so the first write creates that file. A missing path,
// or one that is not a symlink, is itself.
func ResolveFile(path string) (string, error) {
	p := path
	for range maxLinks {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil
		}
		if err != nil {
			return "", bareError(err)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", bareError(err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("more than %d symlinks (a loop?)", maxLinks)
}

// bareError drops the path (often the temp file's) that os errors carry,
// so the caller can name the path the operator knows.
func bareError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// WriteCache replaces a sink's cache file (a stamp) with data through a
// temporary file beside it. A cache is only ever a shortcut, so any
// failure leaves no file at all rather than an old one that may lie.
func WriteCache(path string, data []byte) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp")
	if err != nil {
		_ = os.Remove(path)
		return
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		_ = os.Remove(path)
	}
}
