package wafv2

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/wafv2"
	"github.com/aws/aws-sdk-go-v2/service/wafv2/types"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/ec2"
)

// API is the part of *wafv2.Client the sink uses, so tests can count and
// stub exactly these calls.
type API interface {
	ListIPSets(context.Context, *wafv2.ListIPSetsInput, ...func(*wafv2.Options)) (*wafv2.ListIPSetsOutput, error)
	GetIPSet(context.Context, *wafv2.GetIPSetInput, ...func(*wafv2.Options)) (*wafv2.GetIPSetOutput, error)
	ListTagsForResource(context.Context, *wafv2.ListTagsForResourceInput, ...func(*wafv2.Options)) (*wafv2.ListTagsForResourceOutput, error)
	CreateIPSet(context.Context, *wafv2.CreateIPSetInput, ...func(*wafv2.Options)) (*wafv2.CreateIPSetOutput, error)
	UpdateIPSet(context.Context, *wafv2.UpdateIPSetInput, ...func(*wafv2.Options)) (*wafv2.UpdateIPSetOutput, error)
}

var _ API = (*wafv2.Client)(nil)

// NewClient returns the WAFv2 client for cfg, at endpoint when given;
// otherwise the SDK honours AWS_ENDPOINT_URL_WAFV2.
func NewClient(cfg aws.Config, endpoint string) *wafv2.Client {
	return wafv2.NewFromConfig(cfg, func(o *wafv2.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// snapshot is one read of the IP set.
type snapshot struct {
	name, id, arn string // empty id: the named set does not exist yet
	lock          string
	desc          string
	addrs         []netip.Prefix
}

// find looks the set up by id or name among the scope's IP sets. Nil
// means no set of that name. WAF names are unique per scope and region.
func (s *IPSet) find(ctx context.Context) (*types.IPSetSummary, error) {
	in := &wafv2.ListIPSetsInput{Scope: s.scope, Limit: aws.Int32(100)}
	for {
		out, err := s.api.ListIPSets(ctx, in)
		if err != nil {
			return nil, wrap("ListIPSets", err)
		}
		for _, sum := range out.IPSets {
			if s.byID && aws.ToString(sum.Id) == s.ref || !s.byID && aws.ToString(sum.Name) == s.ref {
				return &sum, nil
			}
		}
		if aws.ToString(out.NextMarker) == "" || len(out.IPSets) == 0 {
			break
		}
		in.NextMarker = out.NextMarker
	}
	if s.byID {
		return nil, fmt.Errorf("IP set %s not found in scope %s", s.ref, s.scope)
	}
	return nil, nil
}

// ours refuses a set that does not carry our tag and owner.
func (s *IPSet) ours(ctx context.Context, snap *snapshot) error {
	out, err := s.api.ListTagsForResource(ctx, &wafv2.ListTagsForResourceInput{ResourceARN: aws.String(snap.arn)})
	if err != nil {
		return wrap("ListTagsForResource", err)
	}
	tags := map[string]string{}
	if out.TagInfoForResource != nil {
		for _, t := range out.TagInfoForResource.TagList {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	if _, ok := tags[ec2.ManagedTag]; !ok {
		return fmt.Errorf("IP set %s (%s) has no %q tag: it was not made by pdsafelist, refusing to change it (tag it %s=managed to hand it over)",
			snap.name, snap.id, ec2.ManagedTag, ec2.ManagedTag)
	}
	if got := tags[ec2.ManagedTag+":owner"]; got != s.owner {
		return fmt.Errorf("IP set %s (%s) belongs to owner %q, not %q; refusing to change it", snap.name, snap.id, got, s.owner)
	}
	return nil
}

func (s *IPSet) create(ctx context.Context, list []string, desc string) error {
	t := map[string]string{ec2.ManagedTag: "managed"}
	if s.owner != "" {
		t[ec2.ManagedTag+":owner"] = s.owner
	}
	for k, v := range s.opts.Tags {
		t[k] = v
	}
	var tags []types.Tag
	for _, k := range slices.Sorted(maps.Keys(t)) {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(t[k])})
	}
	_, err := s.api.CreateIPSet(ctx, &wafv2.CreateIPSetInput{Name: aws.String(s.ref), Scope: s.scope, IPAddressVersion: s.family,
		Addresses: list, Description: aws.String(desc), Tags: tags})
	return wrap("CreateIPSet", err)
}

// update is Apply's UpdateIPSet under the lock token snap was read with,
// retried after a re-read only while the set still holds what the plan
// was made from.
func (s *IPSet) update(ctx context.Context, snap *snapshot, addrs []netip.Prefix, list []string, desc string) error {
	planned := snap
	for conflicts := 0; ; conflicts++ {
		if desc == snap.desc && slices.Equal(addrs, snap.addrs) {
			return nil
		}
		_, err := s.api.UpdateIPSet(ctx, &wafv2.UpdateIPSetInput{Name: aws.String(snap.name), Id: aws.String(snap.id), Scope: s.scope,
			Addresses: list, Description: aws.String(desc), LockToken: aws.String(snap.lock)})
		if err == nil {
			return nil
		}
		var lock *types.WAFOptimisticLockException
		if !errors.As(err, &lock) {
			return wrap("UpdateIPSet", err)
		}
		if conflicts == maxConflicts {
			return fmt.Errorf("UpdateIPSet %s: the IP set changed under us %d times in a row (WAFOptimisticLockException); giving up, the next run retries", snap.id, conflicts+1)
		}
		s.log.Info("IP set changed under us; re-reading", "sink", s.Name(), "err", wrap("UpdateIPSet", err).Error())
		if err := s.sleep(ctx, time.Duration(conflicts+1)*200*time.Millisecond); err != nil {
			return err
		}
		if snap, _, err = s.read(ctx); err != nil {
			return err
		}
		if snap.id == "" {
			return fmt.Errorf("IP set %s vanished", s.ref)
		}
		if snap.id != planned.id || snap.desc != planned.desc || !slices.Equal(snap.addrs, planned.addrs) {
			return fmt.Errorf("UpdateIPSet %s: the IP set changed since it was read (WAFOptimisticLockException; it now holds %d addresses, the plan was made from %d); nothing written, the next run plans against it",
				snap.id, len(snap.addrs), len(planned.addrs))
		}
	}
}

func wrap(op string, err error) error { return sink.WrapAWS(op, err) }
