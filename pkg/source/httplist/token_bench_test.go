package httplist

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/source/listformat"
)

// awsShaped is an ip-ranges.json of n IPv4 entries, its token first as
// AWS writes it.
func awsShaped(n int) []byte {
	type entry struct {
		IPPrefix string `json:"ip_prefix"`
		Region   string `json:"region"`
		Service  string `json:"service"`
		NBG      string `json:"network_border_group"`
	}
	doc := struct {
		SyncToken  string  `json:"syncToken"`
		CreateDate string  `json:"createDate"`
		Prefixes   []entry `json:"prefixes"`
	}{SyncToken: "1764806593", CreateDate: "2026-12-04-00-03-13"}
	for i := range n {
		doc.Prefixes = append(doc.Prefixes, entry{fmt.Sprintf("%d.%d.%d.0/24", 3+i>>16, i>>8&255, i&255), "us-east-1", "EC2", "us-east-1"})
	}
	data, _ := json.Marshal(doc)
	return data
}

// BenchmarkChangeToken is the token read against the parse it comes
// with, on an AWS-sized document (10,000 entries, about 1 MB): the token
// must cost a small part of the parse.
func BenchmarkChangeToken(b *testing.B) {
	data := awsShaped(10_000)
	p, err := listformat.New("json", `.prefixes[] | select(.service == "EC2") | .ip_prefix`)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Addresses(context.Background(), data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("token", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tok, err := changeToken(data, "syncToken"); err != nil || tok != "1764806593" {
				b.Fatal(tok, err)
			}
		}
	})
}
