package iptables

import "github.com/pdsafelist/pdsafelist/pkg/sink"

var _ sink.FileWriter = (*File)(nil)

// Files is the IPv4 file and its IPv6 twin (path6, or the path derived
// from path), so no other sink may write either.
func (s *File) Files() []string { return []string{s.paths[4], s.paths[6]} }
