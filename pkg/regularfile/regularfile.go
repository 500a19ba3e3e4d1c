// Package regularfile opens the files a run reads (config, state, saved
// plans, file sources) only when they are regular files. A named pipe
// would block open until someone writes to it, and a device or socket is
// no list, so anything else is refused at once with its type named.
package regularfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// NotRegularError says what a path is instead of a regular file.
type NotRegularError struct{ Type string }

func (e *NotRegularError) Error() string { return "is a " + e.Type + ", not a regular file" }

// Open opens path for reading if it is a regular file. It never waits: the
// open does not block on a named pipe or a leased file, and the type is
// checked on the descriptor it opened, so a swap after a look cannot get a
// pipe past it. Errors are *fs.PathError, as os.Open's are.
func Open(path string) (*os.File, error) {
	// Looked at first, so a device is refused without being opened.
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if err := check(fi.Mode()); err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err == nil {
		err = check(fi.Mode())
	}
	if err == nil {
		// Reads of a regular file do not block anyway; blocking mode is
		// what every reader expects.
		err = syscall.SetNonblock(fd, false)
	}
	if err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return f, nil
}

// ReadFile is os.ReadFile through Open: one buffer of the file's size,
// as a large state file should not be read by doubling.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	data := make([]byte, 0, size+1)
	for {
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: unwrap(err)}
		}
		if len(data) == cap(data) {
			// Grown since the look: read on.
			data = append(data, 0)[:len(data)]
		}
	}
}

func unwrap(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

func check(m fs.FileMode) error {
	if m.IsRegular() {
		return nil
	}
	return &NotRegularError{Type: typeName(m)}
}

func typeName(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	default:
		return fmt.Sprintf("special file (%s)", t)
	}
}
