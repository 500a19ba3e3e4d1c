package ec2fake

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// query reads EC2's flattened form: Name.1.Sub.2.Leaf=value.
type query url.Values

func (q query) get(k string) string { return url.Values(q).Get(k) }

func (q query) has(k string) bool { _, ok := q[k]; return ok }

// list returns the members Name.1., Name.2., ... as queries of their own.
func (q query) list(name string) []query {
	var out []query
	for i := 1; ; i++ {
		prefix := name + "." + strconv.Itoa(i) + "."
		sub := query{}
		for k, v := range q {
			if rest, ok := strings.CutPrefix(k, prefix); ok {
				sub[rest] = v
			}
		}
		if len(sub) == 0 {
			return out
		}
		out = append(out, sub)
	}
}

// strings returns the scalar members Name.1, Name.2, ...
func (q query) strings(name string) []string {
	var out []string
	for i := 1; ; i++ {
		k := name + "." + strconv.Itoa(i)
		if !q.has(k) {
			return out
		}
		out = append(out, q.get(k))
	}
}

func (q query) filters() map[string][]string {
	out := map[string][]string{}
	for _, f := range q.list("Filter") {
		out[f.get("Name")] = append(out[f.get("Name")], f.strings("Value")...)
	}
	return out
}

func (q query) tags(resourceType string) map[string]string {
	out := map[string]string{}
	for _, spec := range q.list("TagSpecification") {
		if spec.get("ResourceType") != resourceType {
			continue
		}
		for _, t := range spec.list("Tag") {
			out[t.get("Key")] = t.get("Value")
		}
	}
	return out
}

// page slices items by MaxResults/NextToken and the fake's PageSize.
func page[T any](f *Fake, q query, items []T) ([]T, string) {
	size := f.PageSize
	if n := atoi(q.get("MaxResults")); n > 0 && n < size {
		size = n
	}
	start := atoi(q.get("NextToken"))
	if start > len(items) {
		start = len(items)
	}
	end := min(start+size, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(m map[string]string) []xmlTag {
	var out []xmlTag
	for k, v := range m {
		out = append(out, xmlTag{k, v})
	}
	return out
}

type xmlRule struct {
	ID          string   `xml:"securityGroupRuleId"`
	GroupID     string   `xml:"groupId"`
	Egress      bool     `xml:"isEgress"`
	Protocol    string   `xml:"ipProtocol"`
	FromPort    int32    `xml:"fromPort"`
	ToPort      int32    `xml:"toPort"`
	CIDRv4      string   `xml:"cidrIpv4,omitempty"`
	CIDRv6      string   `xml:"cidrIpv6,omitempty"`
	PrefixList  string   `xml:"prefixListId,omitempty"`
	Description string   `xml:"description,omitempty"`
	Tags        []xmlTag `xml:"tagSet>item"`
}

func toXMLRule(r *Rule) xmlRule {
	x := xmlRule{ID: r.ID, GroupID: r.GroupID, Egress: r.Egress, Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort,
		PrefixList: r.PrefixList, Description: r.Description, Tags: xmlTags(r.Tags)}
	if strings.Contains(r.CIDR, ":") {
		x.CIDRv6 = r.CIDR
	} else if r.CIDR != "" {
		x.CIDRv4 = r.CIDR
	}
	return x
}

type xmlPerm struct {
	Protocol string       `xml:"ipProtocol"`
	FromPort int32        `xml:"fromPort"`
	ToPort   int32        `xml:"toPort"`
	V4       []xmlCIDR    `xml:"ipRanges>item,omitempty"`
	V6       []xmlCIDR6   `xml:"ipv6Ranges>item,omitempty"`
	Lists    []xmlListRef `xml:"prefixListIds>item,omitempty"`
}

type xmlCIDR struct {
	CIDR        string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type xmlCIDR6 struct {
	CIDR        string `xml:"cidrIpv6"`
	Description string `xml:"description,omitempty"`
}

type xmlListRef struct {
	ID          string `xml:"prefixListId"`
	Description string `xml:"description,omitempty"`
}

func toXMLPerm(r *Rule) xmlPerm {
	p := xmlPerm{Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort}
	switch {
	case r.PrefixList != "":
		p.Lists = []xmlListRef{{r.PrefixList, r.Description}}
	case strings.Contains(r.CIDR, ":"):
		p.V6 = []xmlCIDR6{{r.CIDR, r.Description}}
	case r.CIDR != "":
		p.V4 = []xmlCIDR{{r.CIDR, r.Description}}
	}
	return p
}

type xmlList struct {
	ID         string   `xml:"prefixListId"`
	Name       string   `xml:"prefixListName"`
	Family     string   `xml:"addressFamily"`
	State      string   `xml:"state"`
	Version    int64    `xml:"version"`
	MaxEntries int      `xml:"maxEntries"`
	OwnerID    string   `xml:"ownerId"`
	Tags       []xmlTag `xml:"tagSet>item"`
}

func toXMLList(l *PrefixList) xmlList {
	owner := "123456789012"
	if strings.HasPrefix(l.Name, "com.amazonaws.") {
		owner = "AWS"
	}
	return xmlList{ID: l.ID, Name: l.Name, Family: l.Family, State: l.State, Version: l.Version,
		MaxEntries: l.MaxEntries, OwnerID: owner, Tags: xmlTags(l.Tags)}
}

type xmlEntry struct {
	CIDR        string `xml:"cidr"`
	Description string `xml:"description,omitempty"`
}

type returnResp struct {
	Return bool `xml:"return"`
}

func writeXML(w http.ResponseWriter, action string, body any) {
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: xmlns}}}
	var b bytes.Buffer
	if err := xml.NewEncoder(&b).EncodeElement(body, start); err != nil {
		writeError(w, &APIError{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()})
		return
	}
	write(w, http.StatusOK, b.Bytes())
}

// write sends a complete body with its length, on a fresh connection per
// call: with chunked keep-alive responses the SDK now and then failed to
// read a large answer, and its retry turned a success into a duplicate.
func write(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, e *APIError) {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(e.Message))
	write(w, e.Status, fmt.Appendf(nil, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>fake</RequestID></Response>", e.Code, b.String()))
}
