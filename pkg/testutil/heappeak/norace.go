//go:build !race

package heappeak

// Race is true in a -race build (see race.go).
const Race = false
