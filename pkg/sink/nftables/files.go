package nftables

import "github.com/pdsafelist/pdsafelist/pkg/sink"

var _ sink.FileWriter = (*Sink)(nil)

// Files is the one file the sink writes, so no other sink may write it.
func (s *Sink) Files() []string { return []string{s.opts.Path} }
