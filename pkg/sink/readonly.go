package sink

import "context"

type readOnlyKey struct{}

// ReadOnly marks ctx as a run that must write nothing anywhere: a dry run
// or `pdsafelist check`. Current must not write even a cache (such as the
// nftables sink's verified stamp) under such a context.
func ReadOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, readOnlyKey{}, true)
}

// IsReadOnly reports whether ctx was marked by ReadOnly.
func IsReadOnly(ctx context.Context) bool {
	v, _ := ctx.Value(readOnlyKey{}).(bool)
	return v
}
