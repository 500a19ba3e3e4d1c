// Package file is the file source: a list kept on local disk, for
// air-gapped hosts and lists kept in git, read in the same formats as the
// http source.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// Spec is the file source's keys in a set's sources list.
type Spec struct {
	// Path is the list's file, read each run; a missing file fails the
	// source.
	Path               string `yaml:"path"`
	listformat.Options `yaml:",inline"`
}

// Factory registers the file source.
var Factory = source.Factory{
	Help:    "file    path, format (json|text, default json), jq, max_bytes: a list on local disk",
	Options: func() any { return Spec{} },
	New: func(spec source.Spec, env source.Env) (source.Source, error) {
		var o Spec
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		if o.Path == "" {
			return nil, source.Errorf(spec, "missing path")
		}
		p, max, err := o.Parser(env.MaxBytes)
		if err != nil {
			return nil, source.Errorf(spec, "%v", err)
		}
		return New(o.Path, p, max), nil
	},
}

type list struct {
	path   string
	parser *listformat.Parser
	max    int64
}

// New returns a source for the list at path; maxBytes 0 means 1 MiB.
func New(path string, p *listformat.Parser, maxBytes int64) source.Source {
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	return &list{path: path, parser: p, max: maxBytes}
}

func (l *list) Kind() source.Kind { return source.KindFile }
func (l *list) Name() string      { return l.path }

// Resolve reads the file each run, so an edit takes effect on the next
// one. A missing or unreadable file fails the source, freezing its set.
func (l *list) Resolve(ctx context.Context) source.Result {
	res := source.Result{Kind: source.KindFile, Name: l.path}
	data, err := l.read()
	if err != nil {
		res.Err = fmt.Errorf("%s: %s", l.path, oneline.Error(err))
		return res
	}
	addrs, err := l.parser.Addresses(ctx, data)
	if err != nil {
		res.Err = fmt.Errorf("%s: %s", l.path, oneline.Error(err))
		return res
	}
	res.Addresses = source.Merge(addrs)
	return res
}

func (l *list) read() ([]byte, error) {
	f, err := regularfile.Open(l.path)
	if err != nil {
		// The path is already named; keep only the reason.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, l.max+1))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(data)) > l.max {
		return nil, fmt.Errorf("file larger than %d bytes", l.max)
	}
	return data, nil
}
