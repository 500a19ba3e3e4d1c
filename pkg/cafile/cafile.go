// Package cafile reads the extra CA certificates of --ca-file for every
// client that speaks TLS: the lists, AWS and notifications.
package cafile

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pdsafelist/pdsafelist/pkg/regularfile"
)

// Read returns the PEM certificates in path. It is called when a client is
// built, so a bad --ca-file fails the command before anything is asked.
func Read(path string) ([]byte, error) {
	pem, err := regularfile.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("ca file %s: %w", path, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s: no PEM certificates found", path)
	}
	return pem, nil
}

// Pool returns the system's roots (none where the system has no pool)
// plus the certificates in pem. system is x509.SystemCertPool outside
// tests.
func Pool(system func() (*x509.CertPool, error), pem []byte) *x509.CertPool {
	pool, err := system()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pool.AppendCertsFromPEM(pem)
	return pool
}
