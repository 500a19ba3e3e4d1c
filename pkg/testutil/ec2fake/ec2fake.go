// Package ec2fake is an in-process fake of the EC2 Query API, limited to
// security group rules and managed prefix lists. It models what moto does
// not (separate IPv4 and IPv6 rule limits, description rules, canonical
// CIDRs, prefix list versions, modify-in-progress, MaxEntries) and injects
// faults, so the EC2 sink's error paths can be tested deterministically.
package ec2fake

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Limits of real EC2 that the fake enforces.
const (
	DefaultRuleLimit  = 60
	MaxDescription    = 255
	MaxEntriesPerCall = 100
)

var descriptionRE = regexp.MustCompile(`^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$`)

// Rule is one security group rule as EC2 stores it.
type Rule struct {
	ID          string
	GroupID     string
	Egress      bool
	Protocol    string
	FromPort    int32
	ToPort      int32
	CIDR        string // canonical; empty for other kinds of rule
	PrefixList  string // the list a prefix-list rule references
	Description string
	Tags        map[string]string
}

// Entry is one prefix list entry.
type Entry struct {
	CIDR        string
	Description string
}

// PrefixList is a customer-managed prefix list.
type PrefixList struct {
	ID         string
	Name       string
	Family     string // IPv4 or IPv6
	MaxEntries int
	Version    int64
	State      string
	Entries    []Entry
	Tags       map[string]string
	// pollsLeft is how many describes still see modify-in-progress.
	pollsLeft int
	pending   []Entry
}

// Fault makes matching calls fail. Action "" matches every call; Mutating
// restricts it to calls that change state. Skip matching calls pass first,
// then Times calls fail (Times 0 means one).
type Fault struct {
	Action   string
	Mutating bool
	Skip     int
	Times    int
	Code     string
	Message  string
	// Before runs instead of failing, before the call is served, to
	// simulate a concurrent writer; Code is then ignored.
	Before func(f *Fake)
	seen   int
	fired  int
}

// Fake is the server and its state. Use its methods to set up and inspect
// state; they lock, so they are safe while the server is serving.
type Fake struct {
	URL string
	// RuleLimit is rules per group, direction and family.
	RuleLimit int
	// PageSize caps every page so pagination is exercised.
	PageSize int
	// ModifyPolls is how many DescribeManagedPrefixLists calls see a list
	// in modify-in-progress after a change.
	ModifyPolls int

	srv    *httptest.Server
	mu     sync.Mutex
	groups map[string][]*Rule
	lists  map[string]*PrefixList
	calls  map[string]int
	faults []*Fault
	seq    int
}

// New starts a fake; it is closed when the test ends via Close.
func New() *Fake {
	f := &Fake{RuleLimit: DefaultRuleLimit, PageSize: 1000,
		groups: map[string][]*Rule{}, lists: map[string]*PrefixList{}, calls: map[string]int{}}
	// EC2 also returns AWS-managed lists; the sink must skip them.
	f.lists["pl-63a5400a"] = &PrefixList{ID: "pl-63a5400a", Name: "com.amazonaws.us-east-1.s3", Family: "IPv4",
		MaxEntries: 10, Version: 1, State: "create-complete", Entries: []Entry{{CIDR: "52.216.0.0/15"}}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

func (f *Fake) id(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s-%017x", prefix, f.seq)
}

// AddGroup creates an empty security group and returns its id.
func (f *Fake) AddGroup() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.id("sg")
	f.groups[id] = nil
	return id
}

// AddRule adds a rule directly, as someone else would, and returns its id.
func (f *Fake) AddRule(r Rule) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r.ID = f.id("sgr")
	if p, err := netip.ParsePrefix(r.CIDR); err == nil {
		r.CIDR = p.Masked().String()
	}
	f.groups[r.GroupID] = append(f.groups[r.GroupID], &r)
	return r.ID
}

// Rules returns a group's rules sorted by direction, CIDR and port.
func (f *Fake) Rules(group string) []Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Rule, 0, len(f.groups[group]))
	for _, r := range f.groups[group] {
		c := *r
		c.ID = ""
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Egress != b.Egress {
			return !a.Egress
		}
		if a.CIDR != b.CIDR {
			return a.CIDR < b.CIDR
		}
		return a.FromPort < b.FromPort
	})
	return out
}

// AddPrefixList creates a list in modify-complete state and returns its id.
func (f *Fake) AddPrefixList(name, family string, maxEntries int, entries ...Entry) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.id("pl")
	f.lists[id] = &PrefixList{ID: id, Name: name, Family: family, MaxEntries: maxEntries, Version: 1,
		State: "create-complete", Entries: canonicalEntries(entries)}
	return id
}

// List returns a copy of a prefix list, entries sorted.
func (f *Fake) List(id string) (PrefixList, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.lists[id]
	if !ok {
		return PrefixList{}, false
	}
	c := *l
	c.Entries = append([]Entry(nil), l.Entries...)
	sort.Slice(c.Entries, func(i, j int) bool { return c.Entries[i].CIDR < c.Entries[j].CIDR })
	c.pending = nil
	return c, true
}

// ListByName finds a list's id by name.
func (f *Fake) ListByName(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, l := range f.lists {
		if l.Name == name {
			return id, true
		}
	}
	return "", false
}

// BumpVersion simulates another writer changing the list.
func (f *Fake) BumpVersion(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists[id].Version++
}

// SetState forces a list's state, e.g. modify-in-progress for n polls.
func (f *Fake) SetState(id, state string, polls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists[id].State = state
	f.lists[id].pollsLeft = polls
}

// Inject adds a fault.
func (f *Fake) Inject(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ft.Times == 0 {
		ft.Times = 1
	}
	f.faults = append(f.faults, &ft)
}

// Calls returns how often each action was called, faults included.
func (f *Fake) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.calls))
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the counters.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = map[string]int{}
}

// Mutating reports whether an action changes state.
func Mutating(action string) bool {
	return !strings.HasPrefix(action, "Describe") && !strings.HasPrefix(action, "Get")
}

// APIError is an EC2 error response.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func apiErr(code, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, apiErr("InvalidRequest", "%v", err))
		return
	}
	q := query(r.PostForm)
	action := q.get("Action")
	f.mu.Lock()
	f.calls[action]++
	var before func(*Fake)
	if err, hook := f.fault(action); err != nil {
		f.mu.Unlock()
		writeError(w, err)
		return
	} else {
		before = hook
	}
	f.mu.Unlock()
	if before != nil {
		before(f)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := handlers[action]
	if !ok {
		writeError(w, apiErr("InvalidAction", "the fake does not implement %s", action))
		return
	}
	body, err := h(f, q)
	if err != nil {
		writeError(w, err)
		return
	}
	writeXML(w, action, body)
}

// fault returns the error of the first fault that fires for action, or a
// hook to run before serving it.
func (f *Fake) fault(action string) (*APIError, func(*Fake)) {
	for _, ft := range f.faults {
		if ft.Action != "" && ft.Action != action || ft.Mutating && !Mutating(action) || ft.fired >= ft.Times {
			continue
		}
		ft.seen++
		if ft.seen <= ft.Skip {
			continue
		}
		ft.fired++
		if ft.Before != nil {
			return nil, ft.Before
		}
		e := apiErr(ft.Code, "%s", ft.Message)
		if e.Message == "" {
			e.Message = "injected fault"
		}
		switch ft.Code {
		case "RequestLimitExceeded", "Unavailable":
			e.Status = http.StatusServiceUnavailable
		case "InternalError":
			e.Status = http.StatusInternalServerError
		}
		return e, nil
	}
	return nil, nil
}

type handler func(f *Fake, q query) (any, *APIError)

var handlers = map[string]handler{
	"DescribeSecurityGroups":        describeGroups,
	"DescribeSecurityGroupRules":    describeRules,
	"AuthorizeSecurityGroupIngress": authorize(false),
	"AuthorizeSecurityGroupEgress":  authorize(true),
	"RevokeSecurityGroupIngress":    revoke(false),
	"RevokeSecurityGroupEgress":     revoke(true),
	"ModifySecurityGroupRules":      modifyRules,
	"DescribeManagedPrefixLists":    describeLists,
	"GetManagedPrefixListEntries":   getEntries,
	"ModifyManagedPrefixList":       modifyList,
	"CreateManagedPrefixList":       createList,
	"DeleteManagedPrefixList":       deleteList,
	"CreateTags":                    createTags,
}

// ValidDescription applies EC2's rule for rule and entry descriptions.
func ValidDescription(s string) error {
	if len(s) > MaxDescription {
		return fmt.Errorf("description is %d characters, more than %d", len(s), MaxDescription)
	}
	if !descriptionRE.MatchString(s) {
		return fmt.Errorf("description %q has characters outside a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$*", s)
	}
	return nil
}

func canonicalEntries(es []Entry) []Entry {
	out := make([]Entry, 0, len(es))
	for _, e := range es {
		if p, err := netip.ParsePrefix(e.CIDR); err == nil {
			e.CIDR = p.Masked().String()
		}
		out = append(out, e)
	}
	return out
}

func canonical(cidr string, v6 bool) (string, *APIError) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p.Addr().Is6() != v6 || p.Addr().Is4In6() {
		return "", apiErr("InvalidParameterValue", "CIDR block %s is malformed", cidr)
	}
	return p.Masked().String(), nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// DeleteRule removes a rule directly, as someone else would.
func (f *Fake) DeleteRule(group, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rules := f.groups[group]
	for i, r := range rules {
		if r.ID == id {
			f.groups[group] = append(rules[:i:i], rules[i+1:]...)
			return
		}
	}
}
