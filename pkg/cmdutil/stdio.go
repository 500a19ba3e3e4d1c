package cmdutil

import (
	"errors"
	"fmt"
	"io"
)

// Stdio is the path that means standard input (--config, --plan) or
// standard output (--plan-out), as in every Unix tool.
const Stdio = "-"

// MaxStdin bounds what is read from standard input: a saved plan of a
// million entries is about 150 MB.
const MaxStdin = 512 << 20

// ReadStdin reads all of standard input for what (a flag, for messages).
// Standard input can be read once: a second reader is refused by name.
func (f *Factory) ReadStdin(what string) ([]byte, error) {
	if f.stdinBy != "" {
		return nil, fmt.Errorf("%s: standard input is already read by %s; only one of them can be -", what, f.stdinBy)
	}
	f.stdinBy = what
	if f.IO.In == nil {
		return nil, fmt.Errorf("%s: no standard input", what)
	}
	data, err := io.ReadAll(io.LimitReader(f.IO.In, MaxStdin+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading standard input: %w", what, err)
	}
	if len(data) > MaxStdin {
		return nil, fmt.Errorf("%s: standard input holds more than %d MiB", what, MaxStdin>>20)
	}
	if len(data) == 0 {
		return nil, errors.New(what + ": standard input is empty")
	}
	return data, nil
}
