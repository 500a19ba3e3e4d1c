//go:build race

package heappeak

// Race is true in a -race build, where sync.Pool drops what is put back
// at random: buffers that are reused otherwise are allocated again, and a
// test counting allocations must leave room for them.
const Race = true
