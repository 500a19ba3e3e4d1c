package awsconfig

import (
	"context"
	"log/slog"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// logCalls logs each AWS operation once (retries included) at debug: the
// SDK's own logger is off, so this is the only AWS output and it goes
// through the run's slog handler, JSON mode included.
func logCalls(log *slog.Logger) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("pdsafelistCallLog",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				began := time.Now()
				out, md, err := next.HandleInitialize(ctx, in)
				log.Debug("aws call", "service", awsmiddleware.GetServiceID(ctx), "operation", awsmiddleware.GetOperationName(ctx),
					"region", awsmiddleware.GetRegion(ctx), "took", time.Since(began).Round(time.Millisecond), "err", err)
				return out, md, err
			}), middleware.Before)
	}
}
