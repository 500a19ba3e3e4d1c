//go:build !linux

package selfmark

func setMark(fd, mark int) error { return errUnsupported }
