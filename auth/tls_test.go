package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a throw-away CA with a server and a client certificate.
type testPKI struct {
	ca                            *x509.Certificate
	caCert, serverCert, serverKey string // PEM files
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		must(t, err)
		return der, k
	}
	pki := &testPKI{ca: ca, caCert: write("ca.pem", "CERTIFICATE", caDER)}
	der, k := issue(2, x509.ExtKeyUsageServerAuth)
	pki.serverCert = write("server.pem", "CERTIFICATE", der)
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err)
	pki.serverKey = write("server-key.pem", "PRIVATE KEY", kb)
	der, k = issue(3, x509.ExtKeyUsageClientAuth)
	pki.client = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	return pki
}

func TestTLSConfig(t *testing.T) {
	pki := newTestPKI(t)
	cfg, err := TLSConfig(pki.serverCert, pki.serverKey, "")
	must(t, err)
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("TLS: got MinVersion %x, ClientAuth %v; want TLS 1.2, no client certificate", cfg.MinVersion, cfg.ClientAuth)
	}
	cfg, err = TLSConfig(pki.serverCert, pki.serverKey, pki.caCert)
	must(t, err)
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Errorf("mTLS: got ClientAuth %v, want RequireAndVerifyClientCert with client CAs", cfg.ClientAuth)
	}

	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	must(t, os.WriteFile(garbage, []byte("not PEM"), 0o600))
	tests := []struct {
		name                string
		cert, key, clientCA string
		wantErr             string // the file the error must name
	}{
		{"no files", "", "", "", "certificate file and a key file"},
		{"missing certificate", missing, pki.serverKey, "", missing},
		{"garbage key", pki.serverCert, garbage, "", garbage},
		{"missing client CA", pki.serverCert, pki.serverKey, missing, missing},
		{"garbage client CA", pki.serverCert, pki.serverKey, garbage, garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TLSConfig(tt.cert, tt.key, tt.clientCA)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
