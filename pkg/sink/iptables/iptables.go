// Package iptables keeps two dedicated chains, one for ingress and one for
// egress, in step with the plan, for IPv4 (iptables) and IPv6 (ip6tables).
// The live sink replaces only those chains with iptables-restore --noflush
// and hooks them from INPUT and OUTPUT; the file sink writes the same rules
// as files for iptables-restore and never touches the kernel.
package iptables

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
	"github.com/pdsafelist/pdsafelist/pkg/procrun"
	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// Chains are the settings both sink types share.
type Chains struct {
	// ChainIn holds the ingress sets (-s PREFIX), ChainOut the egress
	// sets (-d PREFIX).
	ChainIn  string `yaml:"chain_in"`
	ChainOut string `yaml:"chain_out"`
	// Enforce drops other traffic to the managed ports: none, ingress,
	// egress or both.
	Enforce string `yaml:"enforce"`
	// Jump hooks our chains from INPUT and OUTPUT. Turn it off to place
	// your own jumps.
	Jump bool `yaml:"jump"`
}

// Options are the live sink's settings (config, or --sink iptables?k=v).
type Options struct {
	Chains `yaml:",inline"`
	// IPSetThreshold is the number of prefixes of one set, port and
	// family above which one ipset rule replaces one rule per prefix;
	// negative never uses ipset.
	IPSetThreshold int `yaml:"ipset_threshold"`
	// Wait is how many seconds to wait for the xtables lock (-w); 0 omits
	// the flag.
	Wait int `yaml:"wait"`
	// Command lines, e.g. "ip netns exec ns iptables".
	IPTables         string `yaml:"iptables"`
	IP6Tables        string `yaml:"ip6tables"`
	IPTablesRestore  string `yaml:"iptables-restore"`
	IP6TablesRestore string `yaml:"ip6tables-restore"`
	IPSet            string `yaml:"ipset"`
	// IPSetVia is how ipsets are read and written: netlink, command (the
	// ipset option), or auto, netlink unless the ipset option names
	// another command. A large change fills a temporary set and swaps it
	// in, through netlink or with ipset restore likewise.
	IPSetVia string `yaml:"ipset_via"`
	// NetNS is the network namespace netlink talks to (a name under
	// /run/netns or a path); empty is the tool's own. Set it when the
	// command lines enter a namespace.
	NetNS string `yaml:"netns"`
}

// FileOptions are the file sink's settings (--sink iptables-file:PATH).
type FileOptions struct {
	Chains `yaml:",inline"`
	// Path is the IPv4 file; Path6 the IPv6 one (default: Path with a
	// trailing "v4" turned into "v6", else Path + ".v6").
	Path  string `yaml:"path"`
	Path6 string `yaml:"path6"`
	// Check runs iptables-restore --test on the new files before they
	// replace the old: auto (when usable), always or never.
	Check string `yaml:"check"`
	// Command lines that run the checks, e.g. "ip netns exec ns
	// iptables-restore".
	IPTablesRestore  string `yaml:"iptables-restore"`
	IP6TablesRestore string `yaml:"ip6tables-restore"`
}

// Default chain names.
const (
	DefaultChainIn  = "PDSAFELIST-IN"
	DefaultChainOut = "PDSAFELIST-OUT"
)

// DefaultOptions are the live sink's defaults.
func DefaultOptions() Options {
	return Options{
		Chains:         Chains{ChainIn: DefaultChainIn, ChainOut: DefaultChainOut, Enforce: "none", Jump: true},
		IPSetThreshold: 200, Wait: 10,
		IPTables: "iptables", IP6Tables: "ip6tables",
		IPTablesRestore: "iptables-restore", IP6TablesRestore: "ip6tables-restore",
		IPSet: "ipset", IPSetVia: "auto",
	}
}

// DefaultFileOptions are the file sink's defaults.
func DefaultFileOptions() FileOptions {
	return FileOptions{
		Chains: Chains{ChainIn: DefaultChainIn, ChainOut: DefaultChainOut, Enforce: "none", Jump: true},
		Check:  "auto", IPTablesRestore: "iptables-restore", IP6TablesRestore: "ip6tables-restore",
	}
}

// Factory registers the live sink type "iptables".
var Factory = sink.Factory{
	Help:    "iptables  keep chains PDSAFELIST-IN/-OUT live in iptables and ip6tables (options: chain_in, chain_out, enforce=none|ingress|egress|both, jump, ipset_threshold, wait, iptables, ip6tables, iptables-restore, ip6tables-restore, ipset, ipset_via=auto|netlink|command, netns)",
	Options: func() any { return DefaultOptions() },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := DefaultOptions()
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		s, err := New(o, env.OwnerID, spec.Origin)
		if err != nil {
			return nil, err
		}
		if env.Logger != nil {
			s.log = env.Logger
		}
		if _, ok := s.kernel.(ipsetNetlink); ok {
			s.stamp = newStamper(env.StateDir, o, s.name, s.ipt)
		}
		s.layout.withSelfMark(env)
		return s, nil
	},
}

// FileFactory registers "iptables-file:PATH".
var FileFactory = sink.Factory{
	ArgKey:  "path",
	Help:    "iptables-file:PATH  write iptables-restore files PATH and PATH's v6 twin (options: path6, chain_in, chain_out, enforce, jump, check=auto|always|never, iptables-restore, ip6tables-restore)",
	Options: func() any { return DefaultFileOptions() },
	Open: func(spec sink.Spec, env sink.Env) (sink.Sink, error) {
		o := DefaultFileOptions()
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		s, err := NewFile(o, env.OwnerID, spec.Origin)
		if err != nil {
			return nil, err
		}
		s.layout.withSelfMark(env)
		return s, nil
	},
}

// withSelfMark takes the tool's self mark, and turns marking on when the
// egress chain drops.
func (l *layout) withSelfMark(env sink.Env) {
	l.selfMark = env.SelfMark.Mark()
	if l.enforces(plan.Egress) {
		env.SelfMark.Enable()
	}
}

var (
	// iptables allows 28 characters; a leading '-' would read as a flag.
	chainRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,27}$`)
	builtins = map[string]bool{"INPUT": true, "OUTPUT": true, "FORWARD": true, "PREROUTING": true, "POSTROUTING": true, "ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "QUEUE": true}
)

func (c Chains) layout(owner, origin string) (layout, error) {
	for _, ch := range []string{c.ChainIn, c.ChainOut} {
		if !chainRE.MatchString(ch) || builtins[ch] {
			return layout{}, fmt.Errorf("%s: chain %q: want a user chain name of up to 28 letters, digits, '-' or '_'", origin, ch)
		}
	}
	if c.ChainIn == c.ChainOut {
		return layout{}, fmt.Errorf("%s: chain_in and chain_out are both %q; they must differ", origin, c.ChainIn)
	}
	switch c.Enforce {
	case "", "none", "ingress", "egress", "both":
	default:
		return layout{}, fmt.Errorf("%s: enforce %q: want none, ingress, egress or both", origin, c.Enforce)
	}
	// Owner ids end up in comments; keep them free of quoting problems.
	if !plan.ValidOwnerID(owner) {
		return layout{}, fmt.Errorf("%s: owner_id %q: want letters, digits, '.', '_' or '-' (it goes into rule comments)", origin, owner)
	}
	return layout{chainIn: c.ChainIn, chainOut: c.ChainOut, owner: owner, enforce: c.Enforce, jump: c.Jump, threshold: -1}, nil
}

// runner runs one command and returns its standard output. Tests replace
// it; errors are one line naming the command.
type runner func(ctx context.Context, argv []string, stdin []byte) ([]byte, error)

func runCommand(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	return procrun.Run(ctx, argv, stdin)
}

func command(line, fallback string) []string {
	if f := strings.Fields(line); len(f) > 0 {
		return f
	}
	return []string{fallback}
}

func with(base []string, args ...string) []string {
	return append(append([]string(nil), base...), args...)
}

func waitArgs(seconds int) []string {
	if seconds <= 0 {
		return nil
	}
	return []string{"-w", strconv.Itoa(seconds)}
}
