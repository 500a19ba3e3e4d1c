package awsconfig

import (
	"context"
	"log/slog"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// logCalls logs each AWS operation once (retries included) at debug,
// through the run's slog handler, JSON mode included. It runs first in
// the stack, before the operation registers its metadata, so the service
// and operation come from what the client puts in the context before the
// stack runs, and the region from the config when the stack has none.
func logCalls(log *slog.Logger, region string) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("pdsafelistCallLog",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				began := time.Now()
				out, md, err := next.HandleInitialize(ctx, in)
				r := awsmiddleware.GetRegion(ctx)
				if r == "" {
					r = region
				}
				log.Debug("aws call", "service", middleware.GetServiceID(ctx), "operation", middleware.GetOperationName(ctx),
					"region", r, "took", time.Since(began).Round(time.Millisecond).String(), "err", err)
				return out, md, err
			}), middleware.Before)
	}
}
