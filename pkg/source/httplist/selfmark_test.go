package httplist

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
)

// List fetches dial through Control, where the self mark is set.
func TestFetchUsesControl(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	var n atomic.Int32
	c, err := NewClient(ClientOptions{Control: func(_, _ string, _ syscall.RawConn) error { n.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n.Load() == 0 {
		t.Fatal("the client dialled without Control")
	}
}
