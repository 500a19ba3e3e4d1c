package iptables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipsetNetlink speaks ipset's netlink protocol itself, so reading and
// changing sets starts no process. Requests are built with the netlink
// library's message types; replies are parsed here, every length checked,
// since what the kernel holds may have been put there by anyone.
type ipsetNetlink struct {
	// nsPath is the network namespace to talk to (a path, or a name
	// under /run/netns); empty is our own.
	nsPath string
}

// Kernel ipset constants the netlink library does not name.
const (
	ipsetFlagListHeader = 1 << 2 // IPSET_FLAG_LIST_HEADER: headers only
	nfprotoIPv4         = 2
	nfprotoIPv6         = 10
)

// socket opens a netfilter netlink socket in the sink's namespace.
func (k ipsetNetlink) socket() (*nl.SocketHandle, error) {
	ns := netns.None()
	if k.nsPath != "" {
		var err error
		if ns, err = netns.GetFromName(k.nsPath); err != nil {
			if ns, err = netns.GetFromPath(k.nsPath); err != nil {
				return nil, fmt.Errorf("netns %s: %w", k.nsPath, err)
			}
		}
		defer ns.Close()
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("ipset netlink socket: %w", err)
	}
	tv := unix.Timeval{Sec: 30}
	if err := errors.Join(s.SetSendTimeout(&tv), s.SetReceiveTimeout(&tv)); err != nil {
		s.Close()
		return nil, fmt.Errorf("ipset netlink socket: %w", err)
	}
	return &nl.SocketHandle{Socket: s}, nil
}

func (k ipsetNetlink) request(sh *nl.SocketHandle, cmd int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(cmd|(unix.NFNL_SUBSYS_IPSET<<8), nl.GetIpsetFlags(cmd))
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: sh}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	return req
}

// execute sends req and hands each reply to f; ipset's own error numbers
// come back with their meaning.
func execute(req *nl.NetlinkRequest, f func(msg []byte) error) error {
	var ferr error
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(msg []byte) bool {
		if f != nil {
			ferr = f(msg)
		}
		return ferr == nil
	})
	if errno, ok := errors.AsType[syscall.Errno](err); ok && errno >= nl.IPSET_ERR_PRIVATE {
		err = fmt.Errorf("%s", nl.IPSetError(uintptr(errno)).Error())
	}
	return errors.Join(err, ferr)
}

// attrs walks netlink attributes, calling f with each type (flags
// masked off) and value; a length that does not fit is an error.
func attrs(b []byte, f func(typ uint16, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errors.New("ipset netlink: truncated attribute")
		}
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & nl.NLA_TYPE_MASK
		if n < 4 || n > len(b) {
			return errors.New("ipset netlink: bad attribute length")
		}
		if err := f(typ, b[4:n]); err != nil {
			return err
		}
		n = (n + 3) &^ 3
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return nil
}

func be32(v []byte) (int, error) {
	if len(v) != 4 {
		return 0, errors.New("ipset netlink: bad u32")
	}
	return int(binary.BigEndian.Uint32(v)), nil
}

// listMessage is one reply to a list request: a set's name and header,
// and with members some of them.
func parseListMessage(msg []byte, info *setInfo, name *string, member func(p netip.Prefix, odd bool) error) error {
	if len(msg) < 4 {
		return errors.New("ipset netlink: short message")
	}
	return attrs(msg[4:], func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case nl.IPSET_ATTR_SETNAME:
			*name = string(nulTrim(v))
		case nl.IPSET_ATTR_TYPENAME:
			info.typ = string(nulTrim(v))
		case nl.IPSET_ATTR_FAMILY:
			if len(v) == 1 {
				info.family = map[byte]family{nfprotoIPv4: 4, nfprotoIPv6: 6}[v[0]]
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
			err = attrs(v, func(typ uint16, v []byte) error {
				if typ != nl.IPSET_ATTR_DATA {
					return nil
				}
				p, odd, err := parseMember(v)
				if err != nil {
					return err
				}
				return member(p, odd)
			})
		}
		return err
	})
}

// parseMember reads one hash:net member; odd is set when it carries
// anything we never write.
func parseMember(b []byte) (netip.Prefix, bool, error) {
	var addr netip.Addr
	cidr, odd := -1, false
	err := attrs(b, func(typ uint16, v []byte) error {
		switch typ {
		case nl.IPSET_ATTR_IP:
			return attrs(v, func(_ uint16, v []byte) error {
				a, ok := netip.AddrFromSlice(v)
				if !ok {
					return errors.New("ipset netlink: bad address")
				}
				addr = a
				return nil
			})
		case nl.IPSET_ATTR_CIDR:
			if len(v) != 1 {
				return errors.New("ipset netlink: bad cidr")
			}
			cidr = int(v[0])
		case nl.IPSET_ATTR_CADT_FLAGS:
			f, err := be32(v)
			odd = odd || f != 0 || err != nil
		case nl.IPSET_ATTR_CADT_LINENO:
		default:
			odd = true // a timeout, counters, a comment
		}
		return nil
	})
	if err != nil {
		return netip.Prefix{}, false, err
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

func (k ipsetNetlink) sets(_ context.Context, need bool) (map[string]setInfo, error) {
	sh, err := k.socket()
	if err != nil {
		return nil, err
	}
	defer sh.Close()
	req := k.request(sh, nl.IPSET_CMD_LIST)
	req.AddData(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_FLAGS | nl.NLA_F_NET_BYTEORDER, Value: ipsetFlagListHeader})
	out := map[string]setInfo{}
	err = execute(req, func(msg []byte) error {
		info, name := setInfo{refs: -1}, ""
		if err := parseListMessage(msg, &info, &name, nil); err != nil {
			return err
		}
		if name == "" {
			return errors.New("ipset netlink: set without a name")
		}
		out[name] = info
		return nil
	})
	if err != nil {
		if !need && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOENT)) {
			return map[string]setInfo{}, nil
		}
		return nil, fmt.Errorf("ipset list: %w", err)
	}
	return out, nil
}

func (k ipsetNetlink) members(_ context.Context, name string) (setMembers, error) {
	sh, err := k.socket()
	if err != nil {
		return setMembers{}, err
	}
	defer sh.Close()
	req := k.request(sh, nl.IPSET_CMD_LIST)
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
	var m setMembers
	err = execute(req, func(msg []byte) error {
		var info setInfo
		got := ""
		return parseListMessage(msg, &info, &got, func(p netip.Prefix, odd bool) error {
			if m.prefixes == nil && info.size > 0 {
				// The header comes first; 16M is ipset's own ceiling.
				m.prefixes = make([]netip.Prefix, 0, min(info.size, 1<<24))
			}
			if got != name {
				return fmt.Errorf("ipset netlink: asked for %s, got %s", name, got)
			}
			if odd {
				m.odd++
			} else {
				m.prefixes = append(m.prefixes, p)
			}
			return nil
		})
	})
	if err != nil {
		return setMembers{}, fmt.Errorf("ipset list %s: %w", name, err)
	}
	return m, nil
}

// change sends one add or delete per member, without NLM_F_EXCL, so an
// add of a member already there or a delete of one gone succeeds.
func (k ipsetNetlink) change(_ context.Context, name string, add, del []netip.Prefix) error {
	if len(add)+len(del) == 0 {
		return nil
	}
	sh, err := k.socket()
	if err != nil {
		return err
	}
	defer sh.Close()
	one := func(cmd int, verb string, p netip.Prefix) error {
		req := k.request(sh, cmd)
		req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
		data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
		ipType := nl.IPSET_ATTR_IPADDR_IPV4
		if p.Addr().Is6() {
			ipType = nl.IPSET_ATTR_IPADDR_IPV6
		}
		ip := nl.NewRtAttr(nl.IPSET_ATTR_IP|int(nl.NLA_F_NESTED), nil)
		ip.AddChild(nl.NewRtAttr(ipType|int(nl.NLA_F_NET_BYTEORDER), p.Addr().AsSlice()))
		data.AddChild(ip)
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_CIDR, nl.Uint8Attr(uint8(p.Bits()))))
		req.AddData(data)
		if err := execute(req, nil); err != nil {
			return fmt.Errorf("ipset %s %s %s: %w", verb, name, p, err)
		}
		return nil
	}
	for _, p := range add {
		if err := one(nl.IPSET_CMD_ADD, "add", p); err != nil {
			return err
		}
	}
	for _, p := range del {
		if err := one(nl.IPSET_CMD_DEL, "del", p); err != nil {
			return err
		}
	}
	return nil
}
