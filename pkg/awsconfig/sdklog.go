package awsconfig

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// sdkLogger hands the SDK's own messages (such as "falling back to
// IMDSv1") to the run's slog handler, so a JSON log stays all JSON; the
// SDK's default would print plain text on stderr.
type sdkLogger struct{ log *slog.Logger }

var _ logging.Logger = sdkLogger{}

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, oneline.String(fmt.Sprintf(format, v...)), "from", "aws-sdk")
}
