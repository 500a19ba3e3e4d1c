// Package dnstest runs an in-process DNS server on loopback (UDP and TCP on
// one port) with a zone that tests and the offline demo can change at run
// time: subset answers, faults, delay and truncation, as GSLB and broken
// resolvers behave.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault makes a name answer badly.
type Fault int

const (
	None     Fault = iota
	ServFail       // RCODE SERVFAIL
	NXDomain       // RCODE NXDOMAIN
	Refused        // RCODE REFUSED
	Drop           // no answer at all: the client times out
)

// Record is what one name holds.
type Record struct {
	// CNAME points the name elsewhere; A and AAAA are then ignored.
	CNAME string
	// NoChase stops the answer at the CNAME, as an authoritative server
	// does for an out-of-zone target, so the client must query the target.
	NoChase bool
	A, AAAA []string
	// TTL in seconds; 0 means 30.
	TTL uint32
	// Subset answers only this many addresses per query, rotating through
	// the list deterministically, as Route 53 multivalue answers do.
	Subset int
	Fault  Fault
	// FailAAAA answers SERVFAIL to AAAA queries only.
	FailAAAA bool
	// Junk adds A records owned by an unrelated name, which a resolver must
	// ignore.
	Junk []string
}

// Zone maps names (with or without the trailing dot) to records.
type Zone map[string]Record

// Query identifies a counted question.
type Query struct {
	Name      string // lowercase FQDN
	Type      uint16
	Transport string // "udp" or "tcp"
}

// Server is a running DNS server.
type Server struct {
	mu     sync.Mutex
	zone   map[string]Record
	delay  time.Duration
	counts map[Query]int
	rot    map[string]int

	addr string
	udp  *dns.Server
	tcp  *dns.Server
}

// Start serves zone on 127.0.0.1 at a free port.
func Start(zone Zone) (*Server, error) {
	return StartOn("127.0.0.1:0", zone)
}

// StartOn serves zone on addr ("127.0.0.1:0" picks a free port).
func StartOn(addr string, zone Zone) (*Server, error) {
	s := &Server{zone: map[string]Record{}, counts: map[Query]int{}, rot: map[string]int{}}
	for n, r := range zone {
		s.zone[fqdn(n)] = r
	}
	pc, ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.handle("udp")), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.handle("tcp")), NotifyStartedFunc: notify}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			s.Close()
			return nil, fmt.Errorf("dnstest: server did not start")
		}
	}
	return s, nil
}

// listen binds UDP and TCP on one port. With port 0 the kernel picks a UDP
// port whose TCP twin may be taken by another process; try a few ports.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnstest: %w", err)
	}
	tries := 1
	if port == "0" {
		tries = 20
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnstest: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= tries {
			return nil, nil, fmt.Errorf("dnstest: %w", err)
		}
	}
}

// StartT starts a server that stops when the test ends.
func StartT(t testing.TB, zone Zone) *Server {
	t.Helper()
	s, err := Start(zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr is "127.0.0.1:PORT", for --nameserver.
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners.
func (s *Server) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Set replaces one name's record.
func (s *Server) Set(name string, r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[fqdn(name)] = r
}

// SetFault changes only a name's fault.
func (s *Server) SetFault(name string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.zone[fqdn(name)]
	r.Fault = f
	s.zone[fqdn(name)] = r
}

// SetDelay delays every answer, to measure how many round trips a
// resolution costs.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Count returns how many queries arrived for name and type over transport
// ("udp", "tcp", or "" for both).
func (s *Server) Count(name string, qtype uint16, transport string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for q, c := range s.counts {
		if q.Name == fqdn(name) && q.Type == qtype && (transport == "" || q.Transport == transport) {
			n += c
		}
	}
	return n
}

func (s *Server) handle(transport string) func(dns.ResponseWriter, *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) != 1 {
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeFormatError)
			_ = w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		m, delay, drop := s.answer(req, q, transport)
		if delay > 0 {
			time.Sleep(delay)
		}
		if drop {
			return
		}
		if transport == "udp" {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	}
}

// answer builds the reply under the lock; the delay happens outside it.
func (s *Server) answer(req *dns.Msg, q dns.Question, transport string) (*dns.Msg, time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(q.Name)
	s.counts[Query{Name: name, Type: q.Qtype, Transport: transport}]++
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	// It answers like a recursive resolver, except where NoChase makes it
	// an authority that leaves an out-of-zone CNAME target to the client.
	m.RecursionAvailable = true
	rec, ok := s.zone[name]
	switch {
	case rec.Fault == Drop:
		return nil, s.delay, true
	case rec.Fault == ServFail, rec.FailAAAA && q.Qtype == dns.TypeAAAA:
		m.Rcode = dns.RcodeServerFailure
		return m, s.delay, false
	case rec.Fault == Refused:
		m.Rcode = dns.RcodeRefused
		return m, s.delay, false
	case rec.Fault == NXDomain || !ok:
		m.Rcode = dns.RcodeNameError
		return m, s.delay, false
	}
	cur := name
	for hops := 0; rec.CNAME != "" && hops < 16; hops++ {
		target := fqdn(rec.CNAME)
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(cur, dns.TypeCNAME, rec.TTL), Target: target})
		if rec.NoChase {
			m.RecursionAvailable = false
			return m, s.delay, false
		}
		next, ok := s.zone[target]
		if !ok {
			return m, s.delay, false
		}
		cur, rec = target, next
	}
	var addrs []string
	switch q.Qtype {
	case dns.TypeA:
		addrs = rec.A
	case dns.TypeAAAA:
		addrs = rec.AAAA
	}
	if rec.Subset > 0 && rec.Subset < len(addrs) {
		key := fmt.Sprintf("%s/%d", cur, q.Qtype)
		start := s.rot[key]
		s.rot[key] = (start + 1) % len(addrs)
		sub := make([]string, rec.Subset)
		for i := range sub {
			sub[i] = addrs[(start+i)%len(addrs)]
		}
		addrs = sub
	}
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(cur, dns.TypeA, rec.TTL), A: ip.To4()})
		} else {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(cur, dns.TypeAAAA, rec.TTL), AAAA: ip})
		}
	}
	if q.Qtype == dns.TypeA {
		for _, a := range rec.Junk {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr("junk.invalid.", dns.TypeA, rec.TTL), A: net.ParseIP(a).To4()})
		}
	}
	return m, s.delay, false
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	if ttl == 0 {
		ttl = 30
	}
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func fqdn(n string) string { return dns.Fqdn(strings.ToLower(n)) }

// Silent binds UDP and TCP on one loopback port and never answers: queries
// wait in the socket, as with a nameserver that is down behind a firewall
// that drops. It stops when the test ends and returns "127.0.0.1:PORT".
func Silent(t testing.TB) string {
	t.Helper()
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
	})
	return pc.LocalAddr().String()
}
