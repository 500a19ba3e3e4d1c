package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseRule reads one "-A CHAIN ..." or "-I CHAIN [N] ..." line as
// iptables -S and iptables-save print it. Only the matches we write are
// understood, each at most once and in the form iptables prints it
// ("-p tcp -m tcp --dport 443"); a line with anything else comes back with
// raw set, so it can never pass for a rule we wrote, and an accepted
// line's String holds exactly its words.
func parseRule(line string) (rule, error) {
	toks, err := split(line)
	if err != nil {
		return rule{}, err
	}
	if len(toks) < 2 || (toks[0] != "-A" && toks[0] != "-I") {
		return rule{}, fmt.Errorf("not a rule: %q", line)
	}
	r := rule{chain: toks[1]}
	unknown := func() (rule, error) { return rule{chain: r.chain, raw: line}, nil }
	if !word(r.chain) {
		return unknown()
	}
	i := 2
	if toks[0] == "-I" && i < len(toks) {
		if _, err := strconv.Atoi(toks[i]); err == nil {
			i++
		}
	}
	// next returns the following n words, if there are that many.
	next := func(n int) ([]string, bool) {
		if i+n >= len(toks) {
			return nil, false
		}
		v := toks[i+1 : i+1+n]
		i += n
		return v, true
	}
	seen := map[string]bool{}
	for ; i < len(toks); i++ {
		opt := toks[i]
		if opt == "-m" && i+1 < len(toks) {
			i++
			opt = "-m " + toks[i]
		}
		if seen[opt] || (opt == "-s" || opt == "-d") && r.addrOpt != "" {
			return unknown()
		}
		seen[opt] = true
		v, ok := []string(nil), false
		switch opt {
		case "-s", "-d":
			if v, ok = next(1); ok {
				r.addrOpt = opt
				r.prefix, err = parsePrefix(v[0])
				ok = err == nil
			}
		case "-p":
			if v, ok = next(1); ok {
				r.proto = v[0]
				ok = word(r.proto)
			}
		case "-m tcp", "-m udp":
			// iptables prints the protocol first, then its match.
			if v, ok = next(2); ok {
				n, err := strconv.ParseUint(v[1], 10, 16)
				ok = opt == "-m "+r.proto && v[0] == "--dport" && err == nil && n > 0 && strconv.FormatUint(n, 10) == v[1]
				r.port = uint16(n)
			}
		case "-m comment":
			if v, ok = next(2); ok {
				// String leaves out an empty comment.
				r.comment = v[1]
				ok = v[0] == "--comment" && r.comment != ""
			}
		case "-m mark":
			if v, ok = next(2); ok {
				r.mark = v[1]
				ok = v[0] == "--mark" && word(r.mark)
			}
		case "-m set":
			if v, ok = next(3); ok {
				r.ipset, r.setDir = v[1], v[2]
				ok = v[0] == "--match-set" && word(r.ipset) && word(r.setDir)
			}
		case "-j":
			if v, ok = next(1); ok {
				r.target = v[0]
				ok = word(r.target)
			}
		}
		if !ok {
			return unknown()
		}
	}
	// A port without its match, or a protocol match we left out of
	// String, would print differently from what the kernel holds.
	if r.target == "" || (r.port != 0) != (seen["-m tcp"] || seen["-m udp"]) {
		return unknown()
	}
	return r, nil
}

// word is a value String can print unquoted and split reads back as one
// word; it does not start with '-', so it cannot be mistaken for an option.
func word(s string) bool {
	return s != "" && s[0] != '-' && !strings.ContainsAny(s, " \t\n\r\"\\")
}

// split breaks a line into words the way iptables-save quotes them: double
// quotes with backslash escapes.
func split(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, quoted, esc := false, false, false
	for _, c := range line {
		switch {
		case esc:
			cur.WriteRune(c)
			esc = false
		case c == '\\' && quoted:
			esc = true
		case c == '"':
			quoted = !quoted
			in = true
		case (c == ' ' || c == '\t') && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(c)
			in = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unbalanced quote in %q", line)
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
