// Package dns resolves hostnames to addresses the way a safelist needs:
// every nameserver, several times, unioned, with CNAME chains followed and
// failure kept distinct from an empty answer.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/pdsafelist/pdsafelist/pkg/source"
)

// Config tunes the resolver.
type Config struct {
	// Nameservers are "host:port".
	Nameservers []string
	// Attempts repeats each (name, type, nameserver) query; the answers
	// are unioned because GSLB and Route 53 answer with subsets. 0 means 3.
	Attempts int
	// QueryTimeout bounds one query; 0 means 2s.
	QueryTimeout time.Duration
	// MaxCNAMEDepth bounds the CNAME chain; 0 means 8.
	MaxCNAMEDepth int
	// Control runs on each new socket: the tool's self mark.
	Control func(network, address string, c syscall.RawConn) error
	// Logger gets each query and answer at debug; nil logs nothing.
	Logger *slog.Logger
}

// Resolver queries the configured nameservers.
type Resolver struct {
	cfg Config
	udp *mdns.Client
	tcp *mdns.Client
}

// ednsSize avoids IP fragmentation (DNS flag day 2020).
const ednsSize = 1232

// New returns a resolver with defaults filled in.
func New(cfg Config) *Resolver {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 2 * time.Second
	}
	if cfg.MaxCNAMEDepth <= 0 {
		cfg.MaxCNAMEDepth = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{
		cfg: cfg,
		udp: &mdns.Client{Net: "udp", Timeout: cfg.QueryTimeout, UDPSize: ednsSize},
		tcp: &mdns.Client{Net: "tcp", Timeout: cfg.QueryTimeout},
	}
	if cfg.Control != nil {
		// miekg/dns dials with this dialer as is, so it carries the timeout.
		r.udp.Dialer = &net.Dialer{Timeout: cfg.QueryTimeout, Control: cfg.Control}
		r.tcp.Dialer = &net.Dialer{Timeout: cfg.QueryTimeout, Control: cfg.Control}
	}
	return r
}

// Source returns the source for one hostname.
func (r *Resolver) Source(host string) source.Source {
	return &hostSource{r: r, host: strings.TrimSuffix(strings.ToLower(host), ".")}
}

type hostSource struct {
	r    *Resolver
	host string
}

func (h *hostSource) Kind() source.Kind { return source.KindDNS }
func (h *hostSource) Name() string      { return h.host }

// Resolve looks up A and AAAA at once. If either type got no usable answer
// from any nameserver, the source fails: half an answer would remove the
// other family's addresses.
func (h *hostSource) Resolve(ctx context.Context) source.Result {
	res := source.Result{Kind: source.KindDNS, Name: h.host}
	if len(h.r.cfg.Nameservers) == 0 {
		res.Err = fmt.Errorf("dns %s: no nameservers configured", h.host)
		return res
	}
	types := []uint16{mdns.TypeA, mdns.TypeAAAA}
	out := make([]lookup, len(types))
	var wg sync.WaitGroup
	for i, t := range types {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = h.r.lookup(ctx, mdns.Fqdn(h.host), t)
		}()
	}
	wg.Wait()
	var addrs []source.Address
	var errs []string
	for i, l := range out {
		tname := mdns.TypeToString[types[i]]
		if l.err != nil {
			errs = append(errs, tname+": "+l.err.Error())
			continue
		}
		addrs = append(addrs, l.addrs...)
		res.CNAMEs = append(res.CNAMEs, l.cnames...)
	}
	if len(errs) > 0 {
		res.Err = fmt.Errorf("dns %s: %s", h.host, strings.Join(errs, "; "))
		res.CNAMEs = nil
		return res
	}
	res.Warnings = h.r.warnings(types, out)
	sort.Strings(res.CNAMEs)
	res.CNAMEs = slices.Compact(res.CNAMEs)
	res.Addresses = source.Merge(addrs)
	return res
}

type lookup struct {
	addrs  []source.Address
	cnames []string
	// failed maps each server that did not answer, at some step of the
	// chain, to why.
	failed map[string]string
	err    error
}

// warnings names each server that did not answer, for some type or step
// of a chain, once and in the configured order: the name was resolved from
// the others. "nameserver X timeout" when every type failed alike, else
// the types that failed with their reasons.
func (r *Resolver) warnings(types []uint16, out []lookup) []string {
	var ws []string
	for _, server := range r.cfg.Nameservers {
		var whys []string
		first, alike := "", true
		for i, l := range out {
			why, ok := l.failed[server]
			if i == 0 {
				first = why
			}
			alike = alike && ok && why == first
			if ok {
				whys = append(whys, mdns.TypeToString[types[i]]+" "+why)
			}
		}
		switch {
		case len(whys) == 0:
			continue
		case alike:
			ws = append(ws, "nameserver "+server+" "+first)
		default:
			ws = append(ws, "nameserver "+server+" "+strings.Join(whys, ", "))
		}
	}
	return ws
}

// lookup resolves one type, following the CNAME chain across queries when
// a server answers with the CNAME alone.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) lookup {
	l := lookup{failed: map[string]string{}}
	seen := map[string]bool{name: true}
	depth := 0
	for {
		replies, failed, err := r.queryAll(ctx, name, qtype)
		for server, why := range failed {
			if _, ok := l.failed[server]; !ok {
				l.failed[server] = why
			}
		}
		if err != nil {
			l.err = err
			return l
		}
		next, longest := "", 0
		for _, m := range replies {
			final, chain, addrs, open := walk(m, name, qtype)
			longest = max(longest, len(chain))
			for _, c := range chain {
				if !slices.Contains(l.cnames, c) {
					l.cnames = append(l.cnames, c)
				}
			}
			l.addrs = append(l.addrs, addrs...)
			// A recursive server (RA) has already followed the chain, so a
			// chain that ends without data is NODATA; a server that does
			// not recurse leaves the target for us to ask, and a chain that
			// does not end here (a loop) is chased until seen twice.
			if len(addrs) == 0 && final != name && (!m.RecursionAvailable || open) {
				next = final
			}
		}
		if depth += longest; depth > r.cfg.MaxCNAMEDepth {
			l.err = fmt.Errorf("CNAME chain longer than %d", r.cfg.MaxCNAMEDepth)
			return l
		}
		if len(l.addrs) > 0 || next == "" {
			// Addresses, or NODATA: both are answers.
			for i, c := range l.cnames {
				l.cnames[i] = strings.TrimSuffix(c, ".")
			}
			return l
		}
		if seen[next] {
			l.err = fmt.Errorf("CNAME loop at %s", strings.TrimSuffix(next, "."))
			return l
		}
		for _, c := range l.cnames {
			seen[c] = true
		}
		name = next
	}
}

// walk follows the CNAMEs in an answer from name and returns the final
// name, the names it passed through (targets), the addresses owned by the
// final name, and whether the final name still has a CNAME (a loop).
// Records owned by any other name are ignored: they are not part of this
// answer.
func walk(m *mdns.Msg, name string, qtype uint16) (string, []string, []source.Address, bool) {
	cnames := map[string]string{}
	for _, rr := range m.Answer {
		if c, ok := rr.(*mdns.CNAME); ok {
			cnames[strings.ToLower(c.Hdr.Name)] = strings.ToLower(c.Target)
		}
	}
	cur := strings.ToLower(name)
	var chain []string
	for range 64 {
		t, ok := cnames[cur]
		if !ok || slices.Contains(chain, t) || t == strings.ToLower(name) {
			break
		}
		chain = append(chain, t)
		cur = t
	}
	var addrs []source.Address
	for _, rr := range m.Answer {
		if !strings.EqualFold(rr.Header().Name, cur) {
			continue
		}
		ttl := time.Duration(rr.Header().Ttl) * time.Second
		switch v := rr.(type) {
		case *mdns.A:
			if qtype != mdns.TypeA {
				continue
			}
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
				addrs = append(addrs, source.Address{Prefix: netip.PrefixFrom(a, 32), TTL: ttl})
			}
		case *mdns.AAAA:
			if qtype != mdns.TypeAAAA {
				continue
			}
			// An IPv4-mapped answer stays IPv6 and is refused by the
			// limits like any special-purpose address, not dropped.
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
				addrs = append(addrs, source.Address{Prefix: netip.PrefixFrom(a, 128), TTL: ttl})
			}
		}
	}
	_, open := cnames[cur]
	return cur, chain, addrs, open
}

// straggle is how long, once one nameserver has answered, the others get
// to answer too: as long again as the first took, at least
// minStraggle. Servers of one name answer in about the same time, so their
// subsets still meet in the union, while a silent server costs this, not
// the query timeout, at each step of a CNAME chain.
func straggle(first time.Duration) time.Duration { return max(first, minStraggle) }

const minStraggle = 250 * time.Millisecond

// queryAll asks every nameserver Attempts times at once and returns the
// NOERROR replies. It fails only when no server gave one; servers that
// failed while others answered are returned as failed, server to reason.
func (r *Resolver) queryAll(ctx context.Context, name string, qtype uint16) ([]*mdns.Msg, map[string]string, error) {
	type outcome struct {
		server string
		msg    *mdns.Msg
		err    error
	}
	began := time.Now()
	n := len(r.cfg.Nameservers) * r.cfg.Attempts
	results := make(chan outcome, n)
	for _, server := range r.cfg.Nameservers {
		for range r.cfg.Attempts {
			go func() {
				m, err := r.exchange(ctx, name, qtype, server)
				results <- outcome{server, m, err}
			}()
		}
	}
	var replies []*mdns.Msg
	ok := map[string]bool{}
	lastErr := map[string]string{}
	var late <-chan time.Time
	var wait time.Duration
	// miekg/dns heeds a context's deadline but not its cancellation, so
	// the queries still out are not waited for: each ends at its own
	// timeout, into a channel with room for it.
	take := func(o outcome) {
		switch {
		case o.err != nil:
			lastErr[o.server] = describe(o.err)
		case o.msg.Rcode != mdns.RcodeSuccess:
			lastErr[o.server] = mdns.RcodeToString[o.msg.Rcode]
		default:
			if len(replies) == 0 {
				wait = straggle(time.Since(began))
				late = time.After(wait)
			}
			ok[o.server] = true
			replies = append(replies, o.msg)
		}
	}
	stopped := ""
	for received := 0; received < n && stopped == ""; {
		select {
		case <-late:
			stopped = fmt.Sprintf("timeout (%s after another answered)", wait.Round(time.Millisecond))
		case <-ctx.Done():
			stopped = describe(ctx.Err())
		case o := <-results:
			received++
			take(o)
		}
	}
	// What came in by then counts, whichever was picked first.
	for drained := false; !drained; {
		select {
		case o := <-results:
			take(o)
		default:
			drained = true
		}
	}
	for _, server := range r.cfg.Nameservers {
		if _, said := lastErr[server]; !said && stopped != "" {
			lastErr[server] = stopped
		}
	}
	failed := map[string]string{}
	var all []string
	for _, server := range r.cfg.Nameservers {
		if !ok[server] {
			failed[server] = lastErr[server]
			all = append(all, server+" "+lastErr[server])
		}
	}
	if len(replies) == 0 {
		return nil, nil, fmt.Errorf("all %d nameservers failed: %s", len(r.cfg.Nameservers), strings.Join(all, "; "))
	}
	return replies, failed, nil
}

// exchange sends one query over UDP and retries over TCP when the answer
// was truncated; miekg/dns does neither retry nor fallback itself.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16, server string) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	began := time.Now()
	resp, _, err := r.udp.ExchangeContext(qctx, m, server)
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(qctx, m, server)
	}
	if err != nil {
		r.cfg.Logger.Debug("dns query", "name", name, "type", mdns.TypeToString[qtype], "server", server, "took", time.Since(began).Round(time.Millisecond), "err", err)
		return nil, err
	}
	answers := make([]string, 0, len(resp.Answer))
	for _, rr := range resp.Answer {
		answers = append(answers, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	r.cfg.Logger.Debug("dns query", "name", name, "type", mdns.TypeToString[qtype], "server", server, "rcode", mdns.RcodeToString[resp.Rcode], "answers", answers, "took", time.Since(began).Round(time.Millisecond))
	return resp, nil
}

// describe shortens network errors to what a person needs.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
