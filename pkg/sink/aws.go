package sink

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/pdsafelist/pdsafelist/pkg/oneline"
)

// AWSTarget says how to reach one AWS account and region; empty values
// follow the SDK's defaults (AWS_PROFILE, AWS_REGION, the default
// credential chain).
type AWSTarget struct {
	Region  string
	Profile string
	// RoleARN is assumed through STS with the base credentials.
	RoleARN    string
	ExternalID string
	// MaxAttempts overrides the standard retryer's attempts; 0 keeps it.
	MaxAttempts int
}

// AWS builds the SDK config an AWS sink makes its client from. The
// command's one (cmdutil.Factory) is bound to the command's context and
// carries the CA settings, the self-mark dialer, the assumed role and the
// debug call log, so a sink never loads a config of its own; tests pass
// one that reaches a fake.
type AWS interface {
	Config(AWSTarget) (aws.Config, error)
}

// NoCredentialsError is a failure of the default credential chain in a
// config AWS built; its message is a hint, the SDK's chain stays in the
// cause.
type NoCredentialsError struct{ Err error }

func (e *NoCredentialsError) Error() string {
	return "no AWS credentials found (set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an instance/pod with a role)"
}

func (e *NoCredentialsError) Unwrap() error { return e.Err }

// AWSError keeps an SDK error of an AWS sink to one line with its code:
// the SDK's own message carries the operation, status and request id.
type AWSError struct {
	Op  string
	Err error
}

func (e *AWSError) Error() string {
	var nc *NoCredentialsError
	if errors.As(e.Err, &nc) {
		return fmt.Sprintf("%s: %s", e.Op, nc.Error())
	}
	var ae smithy.APIError
	if errors.As(e.Err, &ae) {
		return fmt.Sprintf("%s: %s: %s", e.Op, ae.ErrorCode(), oneline.String(ae.ErrorMessage()))
	}
	return fmt.Sprintf("%s: %s", e.Op, oneline.Error(e.Err))
}

func (e *AWSError) Unwrap() error { return e.Err }

// WrapAWS wraps err from the call op in an AWSError; nil stays nil.
func WrapAWS(op string, err error) error {
	if err == nil {
		return nil
	}
	return &AWSError{Op: op, Err: err}
}
