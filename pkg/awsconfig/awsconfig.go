// Package awsconfig loads the AWS SDK configuration for sinks the way the
// AWS CLI would, with what the whole run shares: the command's context,
// --ca-file, the self-mark dialer and the debug call log. cmdutil.Factory
// makes the one Loader of a command; sinks only name their target.
package awsconfig

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	"github.com/pdsafelist/pdsafelist/pkg/cafile"
	"github.com/pdsafelist/pdsafelist/pkg/oneline"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// Loader builds SDK configs for one command. It implements sink.AWS.
type Loader struct {
	// Context bounds loading, which may query the instance metadata
	// service (defaults_mode auto); it is the command's, so a signal or
	// --timeout stops it. Calls use the context they are given.
	Context context.Context
	// CAFile is --ca-file: extra roots next to the system's, so a proxy
	// that re-signs traffic is trusted for AWS as for the lists.
	// AWS_CA_BUNDLE is honoured by the SDK on top.
	CAFile string
	// Control marks the sockets (selfmark.Marker.Control); nil: unmarked.
	Control func(network, address string, c syscall.RawConn) error
	// Logger receives one debug line per AWS call and the SDK's own
	// messages; nil: none.
	Logger *slog.Logger
}

var _ sink.AWS = (*Loader)(nil)

// Config reads the environment and shared files only; credentials are
// fetched lazily on the first call, with that call's context.
func (l *Loader) Config(t sink.AWSTarget) (aws.Config, error) {
	ctx := l.Context
	if ctx == nil {
		ctx = context.Background()
	}
	var lo []func(*config.LoadOptions) error
	if t.Region != "" {
		lo = append(lo, config.WithRegion(t.Region))
	}
	if t.Profile != "" {
		lo = append(lo, config.WithSharedConfigProfile(t.Profile))
	}
	if t.MaxAttempts > 0 {
		lo = append(lo, config.WithRetryMaxAttempts(t.MaxAttempts))
	}
	if l.Logger != nil {
		lo = append(lo, config.WithLogger(sdkLogger{l.Logger}))
	} else {
		lo = append(lo, config.WithLogger(logging.Nop{}))
	}
	client, err := l.httpClient()
	if err != nil {
		return aws.Config{}, err
	}
	if client != nil {
		lo = append(lo, config.WithHTTPClient(client))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS config: %s", oneline.Error(err))
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no AWS region: set region in the sink options or AWS_REGION")
	}
	if cfg.Credentials != nil {
		// Wrapped inside a fresh cache, so the SDK keeps caching and a
		// failure reaches the sink as a typed cause.
		cfg.Credentials = aws.NewCredentialsCache(hintCredentials{cfg.Credentials})
	}
	if t.RoleARN != "" {
		p := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), t.RoleARN, func(ao *stscreds.AssumeRoleOptions) {
			ao.RoleSessionName = "pdsafelist"
			if t.ExternalID != "" {
				ao.ExternalID = aws.String(t.ExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(p)
	}
	if l.Logger != nil {
		cfg.APIOptions = append(cfg.APIOptions, logCalls(l.Logger, cfg.Region))
	}
	return cfg, nil
}

// httpClient dials through Control and trusts CAFile; nil leaves the
// SDK's default client.
func (l *Loader) httpClient() (*awshttp.BuildableClient, error) {
	if l.Control == nil && l.CAFile == "" {
		return nil, nil
	}
	c := awshttp.NewBuildableClient()
	if l.Control != nil {
		c = c.WithDialerOptions(func(d *net.Dialer) { d.Control = l.Control })
	}
	if l.CAFile != "" {
		pem, err := cafile.Read(l.CAFile)
		if err != nil {
			return nil, err
		}
		pool := cafile.Pool(x509.SystemCertPool, pem)
		c = c.WithTransportOptions(func(tr *http.Transport) {
			// The SDK's transport sets TLS 1.2 as the minimum; keep it.
			tr.TLSClientConfig = tr.TLSClientConfig.Clone()
			tr.TLSClientConfig.RootCAs = pool
		})
	}
	return c, nil
}

// hintCredentials turns "the default chain found nothing" into one line
// that says where credentials can come from.
type hintCredentials struct{ aws.CredentialsProvider }

func (h hintCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := h.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return c, &sink.NoCredentialsError{Err: err}
	}
	return c, err
}
