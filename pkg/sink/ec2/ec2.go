// Package ec2 keeps AWS security group rules and customer-managed prefix
// lists in sync with the desired sets. Only rules and entries carrying our
// description marker are ever revoked or removed.
package ec2

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// API is the part of *ec2.Client the sinks use, so tests can count and
// stub exactly these calls.
type API interface {
	DescribeSecurityGroups(context.Context, *ec2.DescribeSecurityGroupsInput, ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
	DescribeSecurityGroupRules(context.Context, *ec2.DescribeSecurityGroupRulesInput, ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupRulesOutput, error)
	AuthorizeSecurityGroupIngress(context.Context, *ec2.AuthorizeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error)
	AuthorizeSecurityGroupEgress(context.Context, *ec2.AuthorizeSecurityGroupEgressInput, ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupEgressOutput, error)
	RevokeSecurityGroupIngress(context.Context, *ec2.RevokeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error)
	RevokeSecurityGroupEgress(context.Context, *ec2.RevokeSecurityGroupEgressInput, ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupEgressOutput, error)
	ModifySecurityGroupRules(context.Context, *ec2.ModifySecurityGroupRulesInput, ...func(*ec2.Options)) (*ec2.ModifySecurityGroupRulesOutput, error)
	DescribeManagedPrefixLists(context.Context, *ec2.DescribeManagedPrefixListsInput, ...func(*ec2.Options)) (*ec2.DescribeManagedPrefixListsOutput, error)
	GetManagedPrefixListEntries(context.Context, *ec2.GetManagedPrefixListEntriesInput, ...func(*ec2.Options)) (*ec2.GetManagedPrefixListEntriesOutput, error)
	ModifyManagedPrefixList(context.Context, *ec2.ModifyManagedPrefixListInput, ...func(*ec2.Options)) (*ec2.ModifyManagedPrefixListOutput, error)
	CreateManagedPrefixList(context.Context, *ec2.CreateManagedPrefixListInput, ...func(*ec2.Options)) (*ec2.CreateManagedPrefixListOutput, error)
	DeleteManagedPrefixList(context.Context, *ec2.DeleteManagedPrefixListInput, ...func(*ec2.Options)) (*ec2.DeleteManagedPrefixListOutput, error)
}

var _ API = (*ec2.Client)(nil)

// AWSOptions say how to reach one account and region; empty values follow
// the SDK's defaults (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_EC2, the
// default credential chain).
type AWSOptions struct {
	// Region of the target; default AWS_REGION or the shared config's.
	Region string `yaml:"region"`
	// Profile is the shared config profile; default AWS_PROFILE.
	Profile string `yaml:"profile"`
	// RoleARN is assumed through STS with the base credentials.
	RoleARN string `yaml:"role_arn"`
	// ExternalID is passed when assuming RoleARN.
	ExternalID string `yaml:"external_id"`
	// Endpoint overrides the service's URL (a VPC endpoint, or moto in
	// tests); default AWS_ENDPOINT_URL_EC2, or AWS_ENDPOINT_URL_WAFV2 for
	// WAF.
	Endpoint string `yaml:"endpoint"`
	// MaxAttempts overrides the standard retryer's attempts (default 3,
	// or AWS_MAX_ATTEMPTS).
	MaxAttempts int `yaml:"max_attempts"`
	// Timeout bounds reading, and separately applying, this target
	// (0: DefaultTimeout, 5m).
	Timeout time.Duration `yaml:"timeout"`
	// OwnerID overrides the global owner_id for this target.
	OwnerID string `yaml:"owner_id"`
	// Tags are added to every rule or list we create.
	Tags Tags `yaml:"tags"`
}

// Tags is a mapping in the config file and k=v,k2=v2 on --sink, where
// every option is a string.
type Tags map[string]string

// UnmarshalYAML accepts either form.
func (t *Tags) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return fmt.Errorf("tags: want a mapping of strings")
		}
		*t = m
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("tags: want a mapping or key=value,key=value")
	}
	m := Tags{}
	for _, kv := range strings.Split(n.Value, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return fmt.Errorf("tags: %q: want key=value,key=value", n.Value)
		}
		m[k] = v
	}
	*t = m
	return nil
}

// DefaultTimeout bounds one read or one apply of a target.
const DefaultTimeout = 5 * time.Minute

// ManagedTag marks what we create; the example IAM policy only allows
// changes to groups and lists carrying it.
const ManagedTag = "pdsafelist"

// Config asks the run's AWS loader (env.AWS) for the target's SDK config;
// the sink makes its client from it and loads nothing itself.
func Config(env sink.Env, o AWSOptions) (aws.Config, error) {
	if env.AWS == nil {
		return aws.Config{}, errors.New("no AWS loader in the sink environment")
	}
	return env.AWS.Config(o.Target())
}

// Target is the part of the options that says how to reach AWS.
func (o AWSOptions) Target() sink.AWSTarget {
	return sink.AWSTarget{Region: o.Region, Profile: o.Profile, RoleARN: o.RoleARN, ExternalID: o.ExternalID, MaxAttempts: o.MaxAttempts}
}

// NewClient returns the EC2 client for cfg, at endpoint when given.
func NewClient(cfg aws.Config, endpoint string) *ec2.Client {
	return ec2.NewFromConfig(cfg, func(eo *ec2.Options) {
		if endpoint != "" {
			eo.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// Owner checks what every AWS sink's options must be (a role ARN, no
// negative bounds, tags AWS takes) and returns the owner id the sink
// labels what it writes with: the option, else the config's.
func (o AWSOptions) Owner(env sink.Env) (string, error) {
	if err := sink.CheckOptions("", o); err != nil {
		return "", err
	}
	if err := sink.CheckText("", "owner_id", env.OwnerID); err != nil {
		return "", err
	}
	if o.RoleARN != "" && !strings.HasPrefix(o.RoleARN, "arn:") {
		return "", fmt.Errorf("role_arn %q: want an IAM role ARN", o.RoleARN)
	}
	if o.MaxAttempts < 0 || o.Timeout < 0 {
		return "", errors.New("max_attempts and timeout must not be negative")
	}
	for k, v := range o.Tags {
		if k == "" || len(k) > 128 || len(v) > 256 || strings.HasPrefix(strings.ToLower(k), "aws:") {
			return "", fmt.Errorf("tag %q: keys are 1-128 characters, values up to 256, and aws: is reserved", k)
		}
	}
	if o.OwnerID != "" {
		return o.OwnerID, nil
	}
	return env.OwnerID, nil
}

func (o AWSOptions) validate(env sink.Env, sets []string) (string, error) {
	owner, err := o.Owner(env)
	if err != nil {
		return "", err
	}
	// Set names are checked by the config; the longest possible one
	// bounds the description's length.
	if err := CheckDescription(sink.Marker(owner, strings.Repeat("x", 31))); err != nil {
		return "", fmt.Errorf("owner id %q: %w", owner, err)
	}
	for _, s := range sets {
		if err := CheckDescription(sink.Marker(owner, s)); err != nil {
			return "", fmt.Errorf("set %q: %w", s, err)
		}
	}
	return owner, nil
}

// CallTimeout bounds one read, and separately one apply, of the target.
func (o AWSOptions) CallTimeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// MaxDescription is EC2's limit for rule and entry descriptions.
const MaxDescription = 255

var descriptionRE = regexp.MustCompile(`^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$`)

// CheckDescription applies EC2's character set and length to a
// description, so a bad owner id fails at start-up, not half way through.
func CheckDescription(s string) error {
	if len(s) > MaxDescription {
		return fmt.Errorf("description %q is %d characters; EC2 allows %d", s, len(s), MaxDescription)
	}
	if !descriptionRE.MatchString(s) {
		return fmt.Errorf("description %q: EC2 allows only a-z A-Z 0-9, spaces and ._-:/()#,@[]+=&;{}!$*", s)
	}
	return nil
}

func wrap(op string, err error) error { return sink.WrapAWS(op, err) }

// code is the AWS error code of err, or "".
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func tags(owner string, extra map[string]string) map[string]string {
	t := map[string]string{ManagedTag: "managed"}
	if owner != "" {
		t[ManagedTag+":owner"] = owner
	}
	for k, v := range extra {
		t[k] = v
	}
	return t
}
