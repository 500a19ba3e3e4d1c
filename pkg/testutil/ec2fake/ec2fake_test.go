package ec2fake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
)

func client(f *Fake) *ec2.Client {
	return ec2.NewFromConfig(aws.Config{Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = time.Millisecond; o.MaxAttempts = 1 })
		}},
		func(o *ec2.Options) { o.BaseEndpoint = aws.String(f.URL) })
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprint(err)
}

func ingress(c *ec2.Client, sg string, cidrs []string, desc string) error {
	perm := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(443), ToPort: aws.Int32(443)}
	for _, cidr := range cidrs {
		if strings.Contains(cidr, ":") {
			perm.Ipv6Ranges = append(perm.Ipv6Ranges, types.Ipv6Range{CidrIpv6: aws.String(cidr), Description: aws.String(desc)})
		} else {
			perm.IpRanges = append(perm.IpRanges, types.IpRange{CidrIp: aws.String(cidr), Description: aws.String(desc)})
		}
	}
	_, err := c.AuthorizeSecurityGroupIngress(context.Background(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: []types.IpPermission{perm}})
	return err
}

func TestRulesModelEC2(t *testing.T) {
	f := New()
	defer f.Close()
	sg := f.AddGroup()
	c := client(f)
	if err := ingress(c, sg, []string{"193.0.2.5/24"}, "ok"); err != nil {
		t.Fatal(err)
	}
	if got := f.Rules(sg)[0].CIDR; got != "193.0.2.0/24" {
		t.Errorf("stored %s, want the canonical CIDR", got)
	}
	if err := ingress(c, sg, []string{"193.0.2.0/24"}, "again"); code(err) != "InvalidPermission.Duplicate" {
		t.Errorf("duplicate: %v", err)
	}
	for _, bad := range []string{"caf\u00e9", "a<b", string(make([]byte, 256))} {
		if err := ingress(c, sg, []string{"198.52.100.1/32"}, bad); code(err) != "InvalidParameterValue" {
			t.Errorf("description %q: %v", bad, err)
		}
	}
	// 59 more IPv4 fill the quota; IPv6 has a quota of its own.
	var v4, v6 []string
	for i := 1; i <= 60; i++ {
		v4 = append(v4, fmt.Sprintf("198.52.100.%d/32", i))
		v6 = append(v6, fmt.Sprintf("2001:db9::%x/128", i))
	}
	if err := ingress(c, sg, v4[:59], "x"); err != nil {
		t.Fatal(err)
	}
	if err := ingress(c, sg, v4[59:], "x"); code(err) != "RulesPerSecurityGroupLimitExceeded" {
		t.Errorf("61st IPv4 rule: %v", err)
	}
	if err := ingress(c, sg, v6, "x"); err != nil {
		t.Errorf("60 IPv6 rules next to 60 IPv4: %v", err)
	}
}

func TestFaultsAndCounting(t *testing.T) {
	f := New()
	defer f.Close()
	sg := f.AddGroup()
	c := client(f)
	f.Inject(Fault{Mutating: true, Skip: 1, Code: "UnauthorizedOperation"})
	if err := ingress(c, sg, []string{"193.0.2.1/32"}, "x"); err != nil {
		t.Fatalf("first mutation: %v", err)
	}
	if _, err := c.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{GroupIds: []string{sg}}); err != nil {
		t.Fatalf("reads are not mutations: %v", err)
	}
	if err := ingress(c, sg, []string{"193.0.2.2/32"}, "x"); code(err) != "UnauthorizedOperation" {
		t.Errorf("second mutation: %v", err)
	}
	if err := ingress(c, sg, []string{"193.0.2.3/32"}, "x"); err != nil {
		t.Errorf("fault fired twice: %v", err)
	}
	want := map[string]int{"AuthorizeSecurityGroupIngress": 3, "DescribeSecurityGroups": 1}
	if diff := cmp.Diff(want, f.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestPrefixListVersionsAndStates(t *testing.T) {
	f := New()
	defer f.Close()
	f.ModifyPolls = 1
	id := f.AddPrefixList("pd", "IPv4", 2)
	c := client(f)
	ctx := context.Background()
	modify := func(version int64, cidrs ...string) error {
		in := &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(id), CurrentVersion: aws.Int64(version)}
		for _, cidr := range cidrs {
			in.AddEntries = append(in.AddEntries, types.AddPrefixListEntry{Cidr: aws.String(cidr), Description: aws.String("x")})
		}
		_, err := c.ModifyManagedPrefixList(ctx, in)
		return err
	}
	if err := modify(7, "193.0.2.1/32"); code(err) != "PrefixListVersionMismatch" {
		t.Errorf("stale version: %v", err)
	}
	if err := modify(1, "193.0.2.1/32", "193.0.2.2/32", "193.0.2.3/32"); code(err) != "PrefixListMaxEntriesExceeded" {
		t.Errorf("over MaxEntries: %v", err)
	}
	if err := modify(1, "193.0.2.1/32"); err != nil {
		t.Fatal(err)
	}
	if err := modify(1, "193.0.2.2/32"); code(err) != "IncorrectState" {
		t.Errorf("while modify-in-progress: %v", err)
	}
	var states []string
	for range 2 {
		out, err := c.DescribeManagedPrefixLists(ctx, &ec2.DescribeManagedPrefixListsInput{PrefixListIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, fmt.Sprintf("%s v%d", out.PrefixLists[0].State, aws.ToInt64(out.PrefixLists[0].Version)))
	}
	if diff := cmp.Diff([]string{"modify-in-progress v1", "modify-complete v2"}, states); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}

// A prefix list entry's description cannot be changed in place: EC2
// refuses the CIDR in both lists of one call, and adding it again.
func TestPrefixListNoDescriptionChange(t *testing.T) {
	f := New()
	defer f.Close()
	id := f.AddPrefixList("pd", "IPv4", 5, Entry{CIDR: "193.0.2.1/32", Description: "pdsafelist:events"})
	c := client(f)
	cidr := aws.String("193.0.2.1/32")
	add := []types.AddPrefixListEntry{{Cidr: cidr, Description: aws.String("pdsafelist:api")}}
	_, err := c.ModifyManagedPrefixList(context.Background(), &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(id), CurrentVersion: aws.Int64(1),
		AddEntries: add, RemoveEntries: []types.RemovePrefixListEntry{{Cidr: cidr}}})
	if code(err) != "InvalidParameterValue" || !strings.Contains(err.Error(), "in both") {
		t.Errorf("remove and add of one CIDR: %v", err)
	}
	_, err = c.ModifyManagedPrefixList(context.Background(), &ec2.ModifyManagedPrefixListInput{PrefixListId: aws.String(id), CurrentVersion: aws.Int64(1), AddEntries: add})
	if code(err) != "InvalidPrefixListModification" {
		t.Errorf("adding a CIDR the list holds: %v", err)
	}
	if l, _ := f.List(id); l.Version != 1 || l.Entries[0].Description != "pdsafelist:events" {
		t.Errorf("list changed: %+v", l)
	}
}
