package iptables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	mnl "github.com/mdlayher/netlink"
	"github.com/pdsafelist/pdsafelist/pkg/sink/nfgen"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ipsetNetlink speaks ipset's netlink protocol itself, so reading and
// changing sets starts no process. Requests and replies are built and
// parsed here (the message and attribute numbers are the netlink
// library's), every length checked, since what the kernel holds may have
// been put there by anyone.
type ipsetNetlink struct {
	// nsPath is the network namespace to talk to (a path, or a name
	// under /run/netns); empty is our own.
	nsPath string
}

// Kernel ipset constants the netlink library does not name.
const (
	ipsetFlagListSetName = 1 << 1 // IPSET_FLAG_LIST_SETNAME: names only
	ipsetFlagListHeader  = 1 << 2 // IPSET_FLAG_LIST_HEADER: headers only
	nfprotoIPv4          = 2
	nfprotoIPv6          = 10
)

// nfproto is the family as ipset's netlink attribute carries it.
func (f family) nfproto() byte {
	if f == 4 {
		return nfprotoIPv4
	}
	return nfprotoIPv6
}

// ipsetBuffer is the receive buffer, reused for every read of a run. The
// kernel sizes each message of a dump by the largest read the socket has
// seen (32 KB at most), so a large buffer means few, full messages.
const ipsetBuffer = 64 << 10

// ipsetBatch bounds one add or delete message: ipset takes many members
// in one message (as ipset restore sends them), each message is
// acknowledged on its own.
const ipsetBatch = 32 << 10

// ipsetConn is one netlink socket in the sink's namespace, kept for a
// read or an apply, with one receive buffer.
type ipsetConn struct {
	conn *mnl.Conn
	rc   syscall.RawConn
	buf  []byte
	msg  []byte // the request being built, reused
	seq  uint32
	revs map[family]byte // hash:net's revision per family, once asked
}

// dial opens a netfilter netlink socket in the sink's namespace.
func (k ipsetNetlink) dial(ctx context.Context) (*ipsetConn, error) {
	conn, err := nfgen.Dial(k.nsPath)
	if err != nil {
		return nil, fmt.Errorf("ipset netlink socket: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err == nil {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(30 * time.Second)
		}
		err = conn.SetDeadline(deadline)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ipset netlink socket: %w", err)
	}
	return &ipsetConn{conn: conn, rc: rc, buf: make([]byte, ipsetBuffer)}, nil
}

func (c *ipsetConn) close() { _ = c.conn.Close() }

// begin starts a request of cmd in c.msg: header, nfgenmsg and protocol.
func (c *ipsetConn) begin(cmd int, flags uint16) {
	c.seq++
	b := c.msg[:0]
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set by send
	b = binary.NativeEndian.AppendUint16(b, uint16(cmd|unix.NFNL_SUBSYS_IPSET<<8))
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, c.seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, unix.AF_NETLINK, nl.NFNETLINK_V0, 0, 0)
	c.msg = putAttr(b, nl.IPSET_ATTR_PROTOCOL, nl.IPSET_PROTOCOL)
}

// putAttr appends one attribute, padded to 4 bytes.
func putAttr(b []byte, typ uint16, v ...byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nest opens a nested attribute; its length is set by unnest.
func nest(b []byte, typ uint16) ([]byte, int) {
	off := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	return binary.NativeEndian.AppendUint16(b, typ|unix.NLA_F_NESTED), off
}

func unnest(b []byte, off int) { binary.NativeEndian.PutUint16(b[off:], uint16(len(b)-off)) }

func putName(b []byte, name string) []byte {
	return putAttr(b, nl.IPSET_ATTR_SETNAME, append([]byte(name), 0)...)
}

// exchange sends c.msg and hands the attributes of each reply (after its
// nfgenmsg) to f, until the dump is done or the request acknowledged.
// ipset's own error numbers come back with their meaning.
func (c *ipsetConn) exchange(f func(attrs []byte) error) error {
	binary.NativeEndian.PutUint32(c.msg, uint32(len(c.msg)))
	var serr error
	if err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), c.msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	for {
		var n int
		if err := c.rc.Read(func(fd uintptr) bool {
			// MSG_TRUNC: n is the message's whole length, so a message
			// larger than the buffer is seen, not cut short.
			n, _, serr = unix.Recvfrom(int(fd), c.buf, unix.MSG_TRUNC)
			return serr != unix.EAGAIN
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if n > len(c.buf) {
			return errors.New("ipset netlink: reply larger than the buffer")
		}
		for b := c.buf[:n]; len(b) > 0; {
			if len(b) < unix.NLMSG_HDRLEN {
				return errors.New("ipset netlink: truncated message")
			}
			l := int(binary.NativeEndian.Uint32(b))
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return errors.New("ipset netlink: bad message length")
			}
			msg := b[unix.NLMSG_HDRLEN:l]
			b = b[min((l+3)&^3, len(b)):]
			if seq != c.seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				// Both carry an errno first; 0 is done, or an ack.
				if len(msg) < 4 {
					return errors.New("ipset netlink: short status")
				}
				if errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(msg))); errno != 0 {
					if errno >= nl.IPSET_ERR_PRIVATE {
						return errors.New(nl.IPSetError(uintptr(errno)).Error())
					}
					return errno
				}
				return nil
			case unix.NLMSG_NOOP, unix.NLMSG_OVERRUN:
				continue
			}
			if len(msg) < 4 {
				return errors.New("ipset netlink: short message")
			}
			if f != nil {
				if err := f(msg[4:]); err != nil {
					return err
				}
			}
		}
	}
}

// nextAttr splits the first attribute off b: its type (flags masked
// off), its value and the rest; a length that does not fit is an error.
func nextAttr(b []byte) (typ uint16, v, rest []byte, err error) {
	if len(b) < 4 {
		return 0, nil, nil, errors.New("ipset netlink: truncated attribute")
	}
	n := int(binary.NativeEndian.Uint16(b[0:2]))
	if n < 4 || n > len(b) {
		return 0, nil, nil, errors.New("ipset netlink: bad attribute length")
	}
	typ = binary.NativeEndian.Uint16(b[2:4]) & nl.NLA_TYPE_MASK
	return typ, b[4:n], b[min((n+3)&^3, len(b)):], nil
}

// attrs walks netlink attributes, calling f with each type and value.
func attrs(b []byte, f func(typ uint16, v []byte) error) error {
	for len(b) > 0 {
		typ, v, rest, err := nextAttr(b)
		if err != nil {
			return err
		}
		if err := f(typ, v); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

func be32(v []byte) (int, error) {
	if len(v) != 4 {
		return 0, errors.New("ipset netlink: bad u32")
	}
	return int(binary.BigEndian.Uint32(v)), nil
}

// parseListMessage reads one reply to a list request: a set's name and
// header, and with members some of them, each handed to member.
func parseListMessage(msg []byte, info *setInfo, name *string, member func(p netip.Prefix, odd bool) error) error {
	return attrs(msg, func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case nl.IPSET_ATTR_SETNAME:
			*name = string(nulTrim(v))
		case nl.IPSET_ATTR_TYPENAME:
			info.typ = string(nulTrim(v))
		case nl.IPSET_ATTR_FAMILY:
			if len(v) == 1 {
				switch v[0] {
				case nfprotoIPv4:
					info.family = 4
				case nfprotoIPv6:
					info.family = 6
				}
			}
		case nl.IPSET_ATTR_DATA:
			err = attrs(v, func(typ uint16, v []byte) error {
				var err error
				switch typ {
				case nl.IPSET_ATTR_REFERENCES:
					info.refs, err = be32(v)
				case nl.IPSET_ATTR_MAXELEM:
					info.maxElem, err = be32(v)
				case nl.IPSET_ATTR_ELEMENTS:
					info.size, err = be32(v)
				}
				return err
			})
		case nl.IPSET_ATTR_ADT:
			if member == nil {
				return nil
			}
			for len(v) > 0 {
				typ, data, rest, err := nextAttr(v)
				if err != nil {
					return err
				}
				v = rest
				if typ != nl.IPSET_ATTR_DATA {
					continue
				}
				p, odd, err := parseMember(data)
				if err != nil {
					return err
				}
				if err := member(p, odd); err != nil {
					return err
				}
			}
		}
		return err
	})
}

// parseMember reads one hash:net member; odd is set when it carries
// anything we never write.
func parseMember(b []byte) (netip.Prefix, bool, error) {
	var addr netip.Addr
	cidr, odd := -1, false
	for len(b) > 0 {
		typ, v, rest, err := nextAttr(b)
		if err != nil {
			return netip.Prefix{}, false, err
		}
		b = rest
		switch typ {
		case nl.IPSET_ATTR_IP:
			// One address, nested.
			_, a, more, err := nextAttr(v)
			if err != nil {
				return netip.Prefix{}, false, err
			}
			var ok bool
			if addr, ok = netip.AddrFromSlice(a); !ok || len(more) > 0 {
				return netip.Prefix{}, false, errors.New("ipset netlink: bad address")
			}
		case nl.IPSET_ATTR_CIDR:
			if len(v) != 1 {
				return netip.Prefix{}, false, errors.New("ipset netlink: bad cidr")
			}
			cidr = int(v[0])
		case nl.IPSET_ATTR_CADT_FLAGS:
			f, err := be32(v)
			odd = odd || f != 0 || err != nil
		case nl.IPSET_ATTR_CADT_LINENO:
		default:
			odd = true // a timeout, counters, a comment
		}
	}
	if !addr.IsValid() {
		return netip.Prefix{}, false, errors.New("ipset netlink: member without an address")
	}
	if cidr < 0 {
		cidr = addr.BitLen()
	}
	p, err := addr.Prefix(cidr)
	if err != nil || cidr > addr.BitLen() {
		return netip.Prefix{}, false, fmt.Errorf("ipset netlink: member %s/%d: bad prefix length", addr, cidr)
	}
	return p, odd, nil
}

func nulTrim(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// read lists the members of each named set, then the other sets, on one
// socket. Only the names of the others are listed: a set's header costs
// the kernel a walk of all its buckets, and other tools' large sets would
// cost more than ours. The header is read of each other set of ours
// (own), to know whether anything still uses it.
func (k ipsetNetlink) read(ctx context.Context, names []string, own func(string) bool, need bool) (map[string]setMembers, map[string]setInfo, error) {
	c, err := k.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer c.close()
	members := make(map[string]setMembers, len(names))
	sets := make(map[string]setInfo)
	for _, name := range names {
		m, info, err := c.members(name)
		if err != nil {
			return nil, nil, fmt.Errorf("ipset list %s: %w", name, err)
		}
		members[name], sets[name] = m, info
	}
	all, err := c.list("", ipsetFlagListSetName)
	if err != nil {
		if !need && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOENT)) {
			return members, map[string]setInfo{}, nil
		}
		return nil, nil, fmt.Errorf("ipset list: %w", err)
	}
	for name, info := range all {
		if _, ok := sets[name]; ok {
			continue
		}
		if own(name) {
			one, err := c.list(name, ipsetFlagListHeader)
			if errors.Is(err, unix.ENOENT) || err == nil && len(one) == 0 {
				continue // gone since
			}
			if err != nil {
				return nil, nil, fmt.Errorf("ipset list %s: %w", name, err)
			}
			info = one[name]
		}
		sets[name] = info
	}
	return members, sets, nil
}

// list dumps the header of one set, or every set's (name empty), as
// flags say: ipsetFlagListSetName lists names only.
func (c *ipsetConn) list(name string, flags uint32) (map[string]setInfo, error) {
	c.begin(nl.IPSET_CMD_LIST, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	if name != "" {
		c.msg = putName(c.msg, name)
	}
	c.msg = putAttr(c.msg, nl.IPSET_ATTR_FLAGS|unix.NLA_F_NET_BYTEORDER, binary.BigEndian.AppendUint32(nil, flags)...)
	out := map[string]setInfo{}
	err := c.exchange(func(msg []byte) error {
		info, got := setInfo{refs: -1}, ""
		if err := parseListMessage(msg, &info, &got, nil); err != nil {
			return err
		}
		if got == "" {
			return errors.New("ipset netlink: set without a name")
		}
		out[got] = info
		return nil
	})
	return out, err
}

// members dumps one set straight into one slice, sized from the header
// the first message carries, and returns that header. The members of an
// IPv4 set come packed (8 bytes each, not a 32-byte prefix) and sorted:
// a million of them are never held as prefixes.
func (c *ipsetConn) members(name string) (setMembers, setInfo, error) {
	c.begin(nl.IPSET_CMD_LIST, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	c.msg = putName(c.msg, name)
	var m setMembers
	info := setInfo{refs: -1}
	started := false
	err := c.exchange(func(msg []byte) error {
		got := ""
		err := parseListMessage(msg, &info, &got, func(p netip.Prefix, odd bool) error {
			if !started {
				// The header comes first; 16M is ipset's own ceiling.
				started = true
				n := min(max(info.size, 16), 1<<24)
				if info.family == 4 {
					m.v4 = make([]uint64, 0, n)
				} else {
					m.prefixes = make([]netip.Prefix, 0, n)
				}
			}
			switch {
			case odd:
				m.odd++
			case m.v4 != nil && p.Addr().Is4():
				m.v4 = append(m.v4, key4(p))
			default:
				if m.v4 != nil {
					// Not what an IPv4 set holds: kept as it is.
					for _, k := range m.v4 {
						m.prefixes = append(m.prefixes, prefix4(k))
					}
					m.v4 = nil
				}
				m.prefixes = append(m.prefixes, p)
			}
			return nil
		})
		if err == nil && got != name {
			err = fmt.Errorf("ipset netlink: asked for %s, got %s", name, got)
		}
		return err
	})
	if m.v4 != nil {
		m.v4 = slices.Compact(radix40(m.v4, make([]uint64, len(m.v4))))
	}
	return m, info, err
}

// change adds, then deletes, members in place, many to a message as
// ipset restore sends them, without NLM_F_EXCL, so an add of a member
// already there or a delete of one gone succeeds.
func (k ipsetNetlink) change(ctx context.Context, name string, add, del []netip.Prefix) error {
	if len(add)+len(del) == 0 {
		return nil
	}
	c, err := k.dial(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.adt(nl.IPSET_CMD_ADD, "add", name, add); err != nil {
		return err
	}
	return c.adt(nl.IPSET_CMD_DEL, "del", name, del)
}

// adt adds or deletes ps in batches. A message the kernel refuses is
// sent again member by member, to name the member.
func (c *ipsetConn) adt(cmd int, verb, name string, ps []netip.Prefix) error {
	for len(ps) > 0 {
		n := c.batch(cmd, name, ps)
		if err := c.exchange(nil); err != nil {
			for _, p := range ps[:n] {
				c.batch(cmd, name, []netip.Prefix{p})
				if err := c.exchange(nil); err != nil {
					return fmt.Errorf("ipset %s %s %s: %w", verb, name, p, err)
				}
			}
		}
		ps = ps[n:]
	}
	return nil
}

// script runs staging steps on one socket, stopping at the first that
// fails, as ipset restore stops at its first failing line. No script is
// made: members go from the plan's entries into 32 KB messages.
func (k ipsetNetlink) script(ctx context.Context, steps []ipsetStep) error {
	if len(steps) == 0 {
		return nil
	}
	c, err := k.dial(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	for _, st := range steps {
		if err := c.step(st); err != nil {
			return err
		}
	}
	return nil
}

func (k ipsetNetlink) destroy(ctx context.Context, name string) error {
	return k.script(ctx, []ipsetStep{{op: opDestroy, name: name}})
}

// stageChunk is how many prefixes of a group are taken at a time to be
// sent: a few messages' worth, so no copy of a large group is made.
const stageChunk = 4096

func (c *ipsetConn) step(st ipsetStep) error {
	// Without a name, destroy would destroy every set.
	if st.name == "" || st.op == opSwap && st.with == "" {
		return errors.New("ipset netlink: a step without a set name")
	}
	switch st.op {
	case opDestroy:
		c.begin(nl.IPSET_CMD_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		c.msg = putName(c.msg, st.name)
		if err := c.exchange(nil); err != nil {
			return fmt.Errorf("ipset destroy %s: %w", st.name, err)
		}
	case opSwap:
		c.begin(nl.IPSET_CMD_SWAP, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		c.msg = putName(c.msg, st.name)
		c.msg = putAttr(c.msg, nl.IPSET_ATTR_SETNAME2, append([]byte(st.with), 0)...)
		if err := c.exchange(nil); err != nil {
			return fmt.Errorf("ipset swap %s %s: %w", st.name, st.with, err)
		}
	case opCreate:
		rev, err := c.revision(st.fam)
		if err != nil {
			return fmt.Errorf("ipset create %s: hash:net: %w", st.name, err)
		}
		// NLM_F_EXCL: a set of that name already there is an error, as
		// ipset create without -exist.
		c.begin(nl.IPSET_CMD_CREATE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_EXCL)
		b := putName(c.msg, st.name)
		b = putAttr(b, nl.IPSET_ATTR_TYPENAME, append([]byte("hash:net"), 0)...)
		b = putAttr(b, nl.IPSET_ATTR_REVISION, rev)
		b = putAttr(b, nl.IPSET_ATTR_FAMILY, st.fam.nfproto())
		b, data := nest(b, nl.IPSET_ATTR_DATA)
		b = putAttr(b, nl.IPSET_ATTR_HASHSIZE|unix.NLA_F_NET_BYTEORDER, binary.BigEndian.AppendUint32(nil, uint32(st.hashSize))...)
		b = putAttr(b, nl.IPSET_ATTR_MAXELEM|unix.NLA_F_NET_BYTEORDER, binary.BigEndian.AppendUint32(nil, uint32(st.maxElem))...)
		unnest(b, data)
		c.msg = b
		if err := c.exchange(nil); err != nil {
			return fmt.Errorf("ipset create %s: %w", st.name, err)
		}
	case opAdd:
		g := st.members
		chunk := make([]netip.Prefix, 0, min(g.n, stageChunk))
		for m := g.members(); ; {
			e, ok := m.next()
			if ok {
				chunk = append(chunk, e.Prefix)
			}
			if len(chunk) > 0 && (len(chunk) == cap(chunk) || !ok) {
				if err := c.adt(nl.IPSET_CMD_ADD, "add", st.name, chunk); err != nil {
					return err
				}
				chunk = chunk[:0]
			}
			if !ok {
				break
			}
		}
	default:
		return fmt.Errorf("ipset netlink: unknown step %d", st.op)
	}
	return nil
}

// revision asks the kernel for the newest revision of hash:net it has
// for fam, as the ipset tool does before it creates a set.
func (c *ipsetConn) revision(fam family) (byte, error) {
	if r, ok := c.revs[fam]; ok {
		return r, nil
	}
	c.begin(nl.IPSET_CMD_TYPE, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	c.msg = putAttr(c.msg, nl.IPSET_ATTR_TYPENAME, append([]byte("hash:net"), 0)...)
	c.msg = putAttr(c.msg, nl.IPSET_ATTR_FAMILY, fam.nfproto())
	rev := -1
	err := c.exchange(func(msg []byte) error {
		return attrs(msg, func(typ uint16, v []byte) error {
			if typ == nl.IPSET_ATTR_REVISION && len(v) == 1 {
				rev = int(v[0])
			}
			return nil
		})
	})
	if err == nil && rev < 0 {
		err = errors.New("ipset netlink: the kernel named no revision")
	}
	if err != nil {
		return 0, err
	}
	if c.revs == nil {
		c.revs = map[family]byte{}
	}
	c.revs[fam] = byte(rev)
	return byte(rev), nil
}

// batch builds one add or delete request of as many of ps as fit in
// ipsetBatch, and returns how many it took.
func (c *ipsetConn) batch(cmd int, name string, ps []netip.Prefix) int {
	c.begin(cmd, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b := putName(c.msg, name)
	// The kernel takes a list of members only with a line number, which
	// it would set to the member it refused.
	b = putAttr(b, nl.IPSET_ATTR_LINENO, 0, 0, 0, 0)
	b, adt := nest(b, nl.IPSET_ATTR_ADT)
	n := 0
	for _, p := range ps {
		if n > 0 && len(b) > ipsetBatch {
			break
		}
		var data, ip int
		b, data = nest(b, nl.IPSET_ATTR_DATA)
		b, ip = nest(b, nl.IPSET_ATTR_IP)
		typ := uint16(nl.IPSET_ATTR_IPADDR_IPV4)
		if p.Addr().Is6() {
			typ = nl.IPSET_ATTR_IPADDR_IPV6
		}
		b = putAttr(b, typ|unix.NLA_F_NET_BYTEORDER, p.Addr().AsSlice()...)
		unnest(b, ip)
		b = putAttr(b, nl.IPSET_ATTR_CIDR, uint8(p.Bits()))
		unnest(b, data)
		n++
	}
	unnest(b, adt)
	c.msg = b
	return n
}
