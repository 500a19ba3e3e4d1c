// Package nfgen reads where a network namespace's nf_tables ruleset
// stands: the boot, the namespace and the ruleset's generation. The kernel
// bumps the generation on every committed change to any table of the
// namespace (nft, iptables-nft and every other nf_tables user alike), so
// two readings with one identity saw the same ruleset. Sinks use it to
// skip reading again what they read and verified at that generation.
package nfgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Identity is one reading. Within one boot a namespace's cookie is never
// reused, so equal identities are the same ruleset.
type Identity struct {
	Boot  string
	NetNS uint64
	Gen   uint32
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), which x/sys lacks.
const soNetnsCookie = 71

// Read returns the identity of the namespace conn (a NETLINK_NETFILTER
// socket) lives in.
func Read(conn *netlink.Conn) (Identity, error) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Boot: strings.TrimSpace(string(boot))}
	rc, err := conn.SyscallConn()
	if err != nil {
		return Identity{}, err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { id.NetNS, cerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, soNetnsCookie) }); err != nil {
		return Identity{}, err
	}
	if cerr != nil {
		return Identity{}, fmt.Errorf("netns cookie: %w", cerr)
	}
	if id.Boot == "" || id.NetNS == 0 {
		return Identity{}, errors.New("no boot id or namespace cookie")
	}
	if id.Gen, err = Gen(conn); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Gen reads the ruleset's generation.
func Gen(conn *netlink.Conn) (uint32, error) {
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("no generation in the answer")
}

// HasChain reports whether nf_tables holds chain in table of family
// (unix.NFPROTO_IPV4, …): where iptables-nft keeps a chain, and so
// whether the generation covers it.
func HasChain(conn *netlink.Conn, family uint8, table, chain string) (bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_CHAIN_TABLE, table)
	ae.String(unix.NFTA_CHAIN_NAME, chain)
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN),
			Flags: netlink.Request,
		},
		Data: append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(msgs) > 0, nil
}

// Dial opens a NETLINK_NETFILTER socket in the namespace ns: a name under
// /run/netns, a path, or empty for our own. The socket keeps the
// namespace; the handle is needed only to make it.
func Dial(ns string) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if ns != "" {
		fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if fd, err = unix.Open(ns, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return nil, fmt.Errorf("netns %s: %w", ns, err)
			}
		}
		defer unix.Close(fd)
		cfg.NetNS = fd
	}
	return netlink.Dial(unix.NETLINK_NETFILTER, cfg)
}
