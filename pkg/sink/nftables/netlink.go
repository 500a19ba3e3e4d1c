package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/pdsafelist/pdsafelist/pkg/selfmark"
)

// liveTable is table inet T as the kernel holds it, read through netlink
// and written in the terms of our file: a block per set and chain, whose
// lines are the ones render writes for the same thing, so the live check
// compares structure line by line without parsing nft's output.
type liveTable struct {
	attrs  []string
	blocks []*liveBlock
}

type liveBlock struct {
	head  string // "set NAME {" or "chain NAME {"
	lines []string
	// A set's elements as the kernel holds them: one span per interval,
	// sorted, not merged.
	spans  []span
	keyLen int    // a set's key length: 4 or 16
	file   *block // stands in for spans: see fileTable
}

func (t *liveTable) block(head string) *liveBlock {
	for _, b := range t.blocks {
		if b.head == head {
			return b
		}
	}
	return nil
}

// nlConn is a netlink connection to the namespace the table lives in.
type nlConn struct {
	nft  *gnft.Conn
	raw  *netlink.Conn
	nsFD int // -1: ours
}

// dial opens netlink in the configured namespace, or in ours.
func (s *Sink) dial() (*nlConn, error) {
	c := &nlConn{nsFD: -1}
	var opts []gnft.ConnOption
	cfg := &netlink.Config{}
	if s.opts.Netns != "" {
		fd, err := unix.Open(filepath.Join("/run/netns", s.opts.Netns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", s.opts.Netns, err)
		}
		c.nsFD = fd
		opts = append(opts, gnft.WithNetNSFd(fd))
		cfg.NetNS = fd
	}
	raw, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		c.close()
		return nil, err
	}
	c.raw = raw
	nft, err := gnft.New(append(opts, gnft.AsLasting())...)
	if err != nil {
		c.close()
		return nil, err
	}
	c.nft = nft
	return c, nil
}

func (c *nlConn) close() {
	if c.nft != nil {
		_ = c.nft.CloseLasting()
	}
	if c.raw != nil {
		_ = c.raw.Close()
	}
	if c.nsFD >= 0 {
		_ = unix.Close(c.nsFD)
	}
}

// readLive reads table inet T: nil when it is not loaded.
func (s *Sink) readLive() (*liveTable, error) {
	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.read(s.opts.Table)
}

func (c *nlConn) read(name string) (*liveTable, error) {
	tbl, err := c.nft.ListTableOfFamily(name, gnft.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	lt := &liveTable{}
	if tbl.Flags != 0 {
		lt.attrs = append(lt.attrs, fmt.Sprintf("flags 0x%x", tbl.Flags))
	}
	sets, err := c.nft.GetSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("sets: %w", err)
	}
	// Anonymous sets are the { 443, 8443 } of a rule: their elements are
	// printed where a rule looks them up.
	anon := map[string]string{}
	for _, set := range sets {
		elems, err := c.elements(name, set.Name)
		if err != nil {
			return nil, fmt.Errorf("set %s: elements: %w", set.Name, err)
		}
		if set.Anonymous {
			anon[set.Name] = anonSet(set, elems)
			continue
		}
		b, err := setBlock(set, elems)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", set.Name, err)
		}
		lt.blocks = append(lt.blocks, b)
	}
	chains, err := c.nft.ListChainsOfTableFamily(gnft.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("chains: %w", err)
	}
	byName := map[string]*liveBlock{}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		b := &liveBlock{head: "chain " + ch.Name + " {"}
		if l := chainLine(ch); l != "" {
			b.lines = append(b.lines, l)
		}
		byName[ch.Name] = b
		lt.blocks = append(lt.blocks, b)
	}
	rules, err := c.rules(name)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	for _, r := range rules {
		b := byName[r.chain]
		if b == nil {
			return nil, fmt.Errorf("rule in chain %q, which is not listed", r.chain)
		}
		b.lines = append(b.lines, ruleLine(r, anon))
	}
	return lt, nil
}

// setBlock writes a named set the way render declares it, and reads its
// interval elements: a start key opens an interval, the next end key
// closes it just before; a start with no end runs to the family's last
// address, and an end with no start (nft once wrote one at 0) is none.
func setBlock(set *gnft.Set, pts *points) (*liveBlock, error) {
	b := &liveBlock{head: "set " + set.Name + " {", keyLen: int(set.KeyType.Bytes)}
	b.lines = append(b.lines, "type "+set.KeyType.Name)
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{set.Constant, "constant"}, {set.Dynamic, "dynamic"}, {set.Interval, "interval"}, {set.HasTimeout, "timeout"}, {set.IsMap, "map"}, {set.Concatenation, "concat"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	if len(flags) > 0 {
		b.lines = append(b.lines, "flags "+strings.Join(flags, ","))
	}
	if set.Timeout != 0 {
		b.lines = append(b.lines, "timeout "+set.Timeout.String())
	}
	if set.Size != 0 {
		b.lines = append(b.lines, "size "+strconv.Itoa(int(set.Size)))
	}
	if set.AutoMerge {
		b.lines = append(b.lines, "auto-merge")
	}
	if set.Comment != "" {
		b.lines = append(b.lines, "comment "+strconv.Quote(set.Comment))
	}
	if !set.Interval || set.IsMap || set.Concatenation || (b.keyLen != 4 && b.keyLen != 16) {
		// Not a set render writes: the lines above already differ; its
		// elements are not read as addresses.
		return b, nil
	}
	for _, p := range pts.all() {
		if int(p.n) != b.keyLen {
			return nil, fmt.Errorf("element key of %d bytes in a set of %d-byte keys", p.n, b.keyLen)
		}
	}
	var err error
	b.spans, err = pts.spans(b.keyLen == 16)
	return b, err
}

// ipRanges are the set's intervals as address ranges, for tests and
// messages.
func (b *liveBlock) ipRanges() []netipx.IPRange {
	out := make([]netipx.IPRange, 0, len(b.elements()))
	for _, s := range b.elements() {
		out = append(out, s.ipRange(b.keyLen == 16))
	}
	return out
}

// anonSet prints an anonymous set of ports the way nft lists it in a rule.
func anonSet(set *gnft.Set, pts *points) string {
	var vals []int
	for _, p := range pts.all() {
		if p.end || p.n != 2 || set.KeyType.Bytes != 2 {
			return "{ ? }"
		}
		vals = append(vals, int(p.a.lo))
	}
	slices.Sort(vals)
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = strconv.Itoa(v)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

var hookNames = map[gnft.ChainHook]string{
	unix.NF_INET_PRE_ROUTING: "prerouting", unix.NF_INET_LOCAL_IN: "input", unix.NF_INET_FORWARD: "forward",
	unix.NF_INET_LOCAL_OUT: "output", unix.NF_INET_POST_ROUTING: "postrouting", 5: "ingress",
}

// chainLine is a base chain's declaration as render writes it.
func chainLine(ch *gnft.Chain) string {
	if ch.Hooknum == nil {
		return ""
	}
	hook, ok := hookNames[*ch.Hooknum]
	if !ok {
		hook = "hook" + strconv.Itoa(int(*ch.Hooknum))
	}
	prio := "filter"
	if ch.Priority != nil && *ch.Priority != 0 {
		prio = strconv.Itoa(int(*ch.Priority))
	}
	policy := "accept"
	if ch.Policy == nil || *ch.Policy != gnft.ChainPolicyAccept {
		policy = "drop"
	}
	dev := ""
	if ch.Device != "" {
		dev = " device " + strconv.Quote(ch.Device)
	}
	return fmt.Sprintf("type %s hook %s%s priority %s; policy %s;", ch.Type, hook, dev, prio, policy)
}

// rawRule is one rule of a dump: its chain, expressions and comment.
type rawRule struct {
	chain   string
	exprs   []any    // expr types, or *unknownExpr
	unknown []string // expressions this reader does not decode
	comment string
}

// unknownExpr stands where an expression nothing here decodes was: the
// library would drop it silently, and a rule must never read as ours
// because part of it went unseen.
type unknownExpr struct{ name string }

// rules dumps every rule of table inet name, chain by chain in order.
// The dump is decoded here, not by the library, which leaves out
// expressions it does not know.
func (c *nlConn) rules(name string) ([]rawRule, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(name + "\x00")}})
	if err != nil {
		return nil, err
	}
	msgs, err := c.raw.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, err
	}
	var out []rawRule
	for _, m := range msgs {
		if len(m.Data) < 4 {
			return nil, fmt.Errorf("short rule message")
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		ad.ByteOrder = binary.BigEndian
		var r rawRule
		var table string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE:
				table = ad.String()
			case unix.NFTA_RULE_CHAIN:
				r.chain = ad.String()
			case unix.NFTA_RULE_EXPRESSIONS:
				ad.Nested(func(nad *netlink.AttributeDecoder) error {
					for nad.Next() {
						e, err := decodeExpr(nad.Bytes())
						if err != nil {
							return err
						}
						r.exprs = append(r.exprs, e)
					}
					return nil
				})
			case unix.NFTA_RULE_USERDATA:
				ud := ad.Bytes()
				if cm, ok := userdata.GetString(ud, userdata.TypeComment); ok {
					r.comment = cm
				} else if len(ud) > 0 {
					r.unknown = append(r.unknown, "userdata")
				}
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		if table == name {
			out = append(out, r)
		}
	}
	return out, nil
}

// decodeExpr decodes one NFTA_LIST_ELEM of a rule's expressions.
func decodeExpr(b []byte) (any, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	var name string
	var data []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ad.String()
		case unix.NFTA_EXPR_DATA:
			data = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	var e expr.Any
	switch name {
	case "meta":
		e = &expr.Meta{}
	case "cmp":
		e = &expr.Cmp{}
	case "payload":
		e = &expr.Payload{}
	case "lookup":
		e = &expr.Lookup{}
	case "bitwise":
		e = &expr.Bitwise{}
	case "counter":
		e = &expr.Counter{}
	case "immediate":
		e = &expr.Immediate{}
	default:
		return &unknownExpr{name}, nil
	}
	if err := expr.Unmarshal(unix.NFPROTO_INET, data, e); err != nil {
		return nil, fmt.Errorf("%s expression: %w", name, err)
	}
	// A verdict is an immediate into the verdict register.
	if imm, ok := e.(*expr.Immediate); ok && imm.Register == unix.NFT_REG_VERDICT && len(imm.Data) == 0 {
		v := &expr.Verdict{}
		if err := expr.Unmarshal(unix.NFPROTO_INET, data, v); err != nil {
			return nil, fmt.Errorf("verdict: %w", err)
		}
		return v, nil
	}
	return e, nil
}

// ruleLine writes a rule the way render does, for the rules render
// writes: a payload or mark match against a set, a value or a set of
// ports, then a verdict and a comment. Anything else prints as itself in
// angle brackets, which no rule of ours contains, so it reads as drift.
func ruleLine(r rawRule, anon map[string]string) string {
	var toks []string
	bad := func(what string) { toks = append(toks, "<"+what+">") }
	// field is the value loaded into reg, and how to print what it is
	// compared with.
	var (
		field  string
		reg    uint32
		format func([]byte) string
		fam    string // ip or ip6, from a meta nfproto match
		l4     string // tcp or udp, from a meta l4proto match
		mask   []byte
	)
	ex := r.exprs
	for i := 0; i < len(ex); i++ {
		switch e := ex[i].(type) {
		case *expr.Meta:
			if e.SourceRegister {
				bad("meta set")
				continue
			}
			switch e.Key {
			case expr.MetaKeyNFPROTO, expr.MetaKeyL4PROTO:
				// A dependency nft hides in its listing: the next
				// expression must compare it with one known value.
				cmp, ok := next[*expr.Cmp](ex, i)
				if !ok || cmp.Register != e.Register || cmp.Op != expr.CmpOpEq || len(cmp.Data) != 1 {
					bad("meta " + strconv.Itoa(int(e.Key)))
					continue
				}
				i++
				v := cmp.Data[0]
				switch {
				case e.Key == expr.MetaKeyNFPROTO && v == unix.NFPROTO_IPV4:
					fam = "ip"
				case e.Key == expr.MetaKeyNFPROTO && v == unix.NFPROTO_IPV6:
					fam = "ip6"
				case e.Key == expr.MetaKeyL4PROTO && v == unix.IPPROTO_TCP:
					l4 = "tcp"
				case e.Key == expr.MetaKeyL4PROTO && v == unix.IPPROTO_UDP:
					l4 = "udp"
				default:
					bad(fmt.Sprintf("meta %d %d", e.Key, v))
				}
			case expr.MetaKeyMARK:
				field, reg, mask, format = "meta mark", e.Register, nil, nil
			default:
				bad("meta " + strconv.Itoa(int(e.Key)))
			}
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad {
				bad("payload write")
				continue
			}
			field, reg, format = payloadField(e, fam, l4)
			if field == "" {
				bad(fmt.Sprintf("payload %d %d %d", e.Base, e.Offset, e.Len))
			}
		case *expr.Bitwise:
			if field != "meta mark" || e.SourceRegister != reg || e.DestRegister != reg || e.Len != 4 || len(e.Xor) != 4 || binary.NativeEndian.Uint32(e.Xor) != 0 {
				bad("bitwise")
				continue
			}
			mask = e.Mask
		case *expr.Cmp:
			if field == "" || e.Register != reg {
				bad("cmp")
				continue
			}
			op := map[expr.CmpOp]string{expr.CmpOpEq: "", expr.CmpOpNeq: "!= "}[e.Op]
			if e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq {
				op = fmt.Sprintf("<op %d> ", e.Op)
			}
			switch {
			case field == "meta mark" && len(e.Data) == 4:
				m := selfmark.Mark{Value: binary.NativeEndian.Uint32(e.Data), Mask: 0xffffffff}
				if mask != nil {
					m.Mask = binary.NativeEndian.Uint32(mask)
				}
				toks = append(toks, op+markMatch(m))
			case format != nil:
				toks = append(toks, field+" "+op+format(e.Data))
			default:
				bad("cmp")
			}
			field = ""
		case *expr.Lookup:
			if field == "" || field == "meta mark" || e.SourceRegister != reg || e.IsDestRegSet {
				bad("lookup")
				continue
			}
			op := ""
			if e.Invert {
				op = "!= "
			}
			target := "@" + e.SetName
			if a, ok := anon[e.SetName]; ok {
				target = a
			}
			toks = append(toks, field+" "+op+target)
			field = ""
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				toks = append(toks, "accept")
			case expr.VerdictDrop:
				toks = append(toks, "drop")
			default:
				bad(fmt.Sprintf("verdict %d %s", e.Kind, e.Chain))
			}
		case *expr.Counter:
			toks = append(toks, "counter")
		case *unknownExpr:
			bad(e.name)
		default:
			bad(fmt.Sprintf("%T", e))
		}
	}
	if field != "" {
		bad("unused " + field)
	}
	for _, u := range r.unknown {
		bad(u)
	}
	if r.comment != "" {
		toks = append(toks, "comment "+strconv.Quote(r.comment))
	}
	return strings.Join(toks, " ")
}

func next[T any](ex []any, i int) (T, bool) {
	var zero T
	if i+1 >= len(ex) {
		return zero, false
	}
	v, ok := ex[i+1].(T)
	return v, ok
}

// payloadField names the header fields render matches.
func payloadField(p *expr.Payload, fam, l4 string) (string, uint32, func([]byte) string) {
	addr := func(b []byte) string {
		a, _ := netip.AddrFromSlice(b)
		return a.String()
	}
	port := func(b []byte) string {
		if len(b) != 2 {
			return "<port>"
		}
		return strconv.Itoa(int(binary.BigEndian.Uint16(b)))
	}
	switch {
	case p.Base == expr.PayloadBaseNetworkHeader && fam == "ip" && p.Len == 4 && p.Offset == 12:
		return "ip saddr", p.DestRegister, addr
	case p.Base == expr.PayloadBaseNetworkHeader && fam == "ip" && p.Len == 4 && p.Offset == 16:
		return "ip daddr", p.DestRegister, addr
	case p.Base == expr.PayloadBaseNetworkHeader && fam == "ip6" && p.Len == 16 && p.Offset == 8:
		return "ip6 saddr", p.DestRegister, addr
	case p.Base == expr.PayloadBaseNetworkHeader && fam == "ip6" && p.Len == 16 && p.Offset == 24:
		return "ip6 daddr", p.DestRegister, addr
	case p.Base == expr.PayloadBaseTransportHeader && l4 != "" && p.Len == 2 && p.Offset == 0:
		return l4 + " sport", p.DestRegister, port
	case p.Base == expr.PayloadBaseTransportHeader && l4 != "" && p.Len == 2 && p.Offset == 2:
		return l4 + " dport", p.DestRegister, port
	}
	return "", 0, nil
}

// point is one element of a set's dump: its key as a number, the key's
// length in bytes, and whether it ends an interval. It is read out of the
// receive buffer, which the next read overwrites, and holds no pointer.
type point struct {
	a   num
	n   uint8
	end bool
}

// compare orders points by key, an end before a start at the same key
// (two adjacent intervals).
func (p point) compare(q point) int {
	if c := p.a.compare(q.a); c != 0 {
		return c
	}
	switch {
	case p.end == q.end:
		return 0
	case p.end:
		return -1
	}
	return 1
}

// dumpBuffer is the receive buffer of a dump. The kernel sizes each
// message of a dump by the largest read the socket has seen (32 KB at
// most) and walks an interval set from its start for each one, so reads
// of a page (the netlink library's) make a 100,000-element dump take
// seconds.
const dumpBuffer = 64 << 10

// elements dumps the elements of set in table inet table through the
// socket directly, with a buffer the kernel fills 32 KB at a time, and
// decodes them where they lie in it: no message or attribute is copied
// or allocated, only the points appended.
func (c *nlConn) elements(table, set string) (*points, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(table + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	const seq = 1
	req := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+4+len(attrs))
	req = append(append(req, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0), attrs...)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETSETELEM)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], seq)
	rc, err := c.raw.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	out := &points{}
	buf := make([]byte, dumpBuffer)
	for {
		var n int
		if err := rc.Read(func(fd uintptr) bool {
			n, _, serr = unix.Recvfrom(int(fd), buf, 0)
			return serr != unix.EAGAIN
		}); err != nil {
			return nil, err
		}
		if serr != nil {
			return nil, serr
		}
		if done, err := out.readDump(buf[:n], seq); err != nil || done {
			return out, err
		}
	}
}

// readDump reads the netlink messages of one read of an element dump
// (answers to request seq): done at NLMSG_DONE or an error message.
func (out *points) readDump(b []byte, seq uint32) (done bool, err error) {
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return false, fmt.Errorf("truncated netlink message")
		}
		l := binary.NativeEndian.Uint32(b)
		if l < unix.NLMSG_HDRLEN || l > uint32(len(b)) {
			return false, fmt.Errorf("netlink message of length %d in %d bytes", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		mseq := binary.NativeEndian.Uint32(b[8:])
		data := b[unix.NLMSG_HDRLEN:l]
		b = b[min(len(b), int(l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(data) >= 4 {
				if errno := -int32(binary.NativeEndian.Uint32(data)); errno != 0 {
					return true, syscall.Errno(errno)
				}
			}
			return true, nil
		}
		if len(data) < 4 {
			return false, fmt.Errorf("short element message")
		}
		if err := out.read(data[4:]); err != nil {
			return false, err
		}
	}
	return false, nil
}

// read reads the NFTA_SET_ELEM_LIST_ELEMENTS of one message. It walks
// the attributes by hand, in place: a 100,000-element dump through a
// decoder allocating per attribute cost a quarter of a second.
func (out *points) read(b []byte) error {
	list := attrs{b: b}
	for typ, v, ok := list.next(); ok; typ, v, ok = list.next() {
		if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		elems := attrs{b: v}
		for _, v, ok := elems.next(); ok; _, v, ok = elems.next() {
			var p point
			fields := attrs{b: v}
			for typ, v, ok := fields.next(); ok; typ, v, ok = fields.next() {
				switch typ {
				case unix.NFTA_SET_ELEM_FLAGS:
					if len(v) != 4 {
						return fmt.Errorf("element flags of %d bytes", len(v))
					}
					p.end = binary.BigEndian.Uint32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
				case unix.NFTA_SET_ELEM_KEY:
					key := attrs{b: v}
					for typ, v, ok := key.next(); ok; typ, v, ok = key.next() {
						if typ != unix.NFTA_DATA_VALUE {
							continue
						}
						if len(v) > 16 {
							return fmt.Errorf("element key of %d bytes", len(v))
						}
						p.a, p.n = numOf(v), uint8(len(v))
					}
					if key.err != nil {
						return key.err
					}
				}
			}
			if fields.err != nil {
				return fields.err
			}
			out.add(p)
		}
		if elems.err != nil {
			return elems.err
		}
	}
	return list.err
}

// attrs walks the netlink attributes in b: next returns the type (flags
// cleared) and value of each; err says why the walk stopped early.
type attrs struct {
	b   []byte
	err error
}

func (a *attrs) next() (typ uint16, v []byte, ok bool) {
	if len(a.b) == 0 || a.err != nil {
		return 0, nil, false
	}
	if len(a.b) < unix.NLA_HDRLEN {
		a.err = fmt.Errorf("truncated attribute")
		return 0, nil, false
	}
	l := int(binary.NativeEndian.Uint16(a.b))
	if l < unix.NLA_HDRLEN || l > len(a.b) {
		a.err = fmt.Errorf("attribute of length %d in %d bytes", l, len(a.b))
		return 0, nil, false
	}
	typ = binary.NativeEndian.Uint16(a.b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	v = a.b[unix.NLA_HDRLEN:l]
	a.b = a.b[min(len(a.b), (l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1)):]
	return typ, v, true
}
