package vendor_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pdsafelist/pdsafelist/docs/schema"
	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/render"
	"github.com/pdsafelist/pdsafelist/pkg/resolution"
	"github.com/pdsafelist/pdsafelist/pkg/source"
	"github.com/pdsafelist/pdsafelist/pkg/source/vendor"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/schemacheck"
)

// resolve -o json of a set with a vendor source is valid by the published
// schema: its kind is "vendor".
func TestVendorResultMatchesSchema(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"WEBHOOKS": ["3.18.12.63", "54.187.174.169"]}`))
	}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	base := client.Transport.(*http.Transport)
	tr := base.Clone()
	tr.TLSClientConfig.ServerName = "example.com"
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	client = &http.Client{Transport: tr}
	var sp source.Spec
	if err := yaml.Unmarshal([]byte(`{type: vendor, name: stripe, list: webhooks}`), &sp); err != nil {
		t.Fatal(err)
	}
	sp.Origin = "test"
	src, err := vendor.Factory.New(sp, source.Env{HTTPClient: func() (*http.Client, error) { return client, nil }})
	if err != nil {
		t.Fatal(err)
	}
	spec := config.SetSpec{Name: "stripe", Direction: "ingress", Protocol: "tcp", Ports: []uint16{443}, Sources: []source.Spec{sp}}
	results := resolution.Run(context.Background(), []config.SetSpec{spec}, func(config.SetSpec) []source.Source { return []source.Source{src} }, config.Defaults().Limits)
	if results[0].Err != nil {
		t.Fatal(results[0].Err)
	}
	var b bytes.Buffer
	if err := render.ResolveJSON(&b, results); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte(`"kind": "vendor"`)) && !bytes.Contains(b.Bytes(), []byte(`"kind":"vendor"`)) {
		t.Fatalf("no vendor kind in %s", b.String())
	}
	schemacheck.Assert(t, schema.Resolve, b.Bytes())
}
