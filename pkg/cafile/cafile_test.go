package cafile_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/cafile"
)

func TestReadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "ca file " + filepath.Join(dir, "missing.pem") + ": no such file or directory",
		junk:                              "ca file " + junk + ": no PEM certificates found",
	} {
		_, err := cafile.Read(path)
		if err == nil || err.Error() != want || strings.Contains(err.Error(), "\n") {
			t.Errorf("Read(%s) = %v, want %q", path, err, want)
		}
	}
}

func TestPoolWithoutSystemRoots(t *testing.T) {
	none := func() (*x509.CertPool, error) { return nil, os.ErrNotExist }
	if p := cafile.Pool(none, nil); p == nil || !p.Equal(x509.NewCertPool()) {
		t.Errorf("no system pool and no PEM: got %v, want an empty pool", p)
	}
}
