// Package certs makes throw-away X.509 material for tests: a CA, a server
// certificate for 127.0.0.1 and localhost, a client certificate from the same
// CA, and a "rogue" client certificate from an unrelated CA. Everything is
// generated at test time (ECDSA P-256) and written as PEM into a temporary
// directory; no key is ever committed.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Set holds the PEM file paths of one generated set.
type Set struct {
	Dir string

	CA string // CA certificate: the "chain" that verifies the server and signs clients

	ServerCert, ServerKey string // SANs 127.0.0.1, ::1 and localhost
	ClientCert, ClientKey string // signed by CA

	RogueCA                 string // an unrelated CA
	RogueCert, RogueKey     string // client certificate signed by RogueCA
	ExpiredCert, ExpiredKey string // client certificate signed by CA, expired
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New generates a Set in a directory removed when t ends.
func New(t testing.TB) *Set {
	t.Helper()
	dir := t.TempDir()
	s := &Set{Dir: dir}
	ca := newCA(t, "devo-aws-collector test CA")
	s.CA = writeCert(t, dir, "ca.crt", ca.cert.Raw)

	now := time.Now()
	s.ServerCert, s.ServerKey = leaf(t, dir, "server", ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
	})
	s.ClientCert, s.ClientKey = leaf(t, dir, "client", ca, clientTemplate("test-domain", now.Add(-time.Hour), now.Add(24*time.Hour)))
	s.ExpiredCert, s.ExpiredKey = leaf(t, dir, "expired", ca, clientTemplate("test-domain-expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour)))

	rogue := newCA(t, "rogue test CA")
	s.RogueCA = writeCert(t, dir, "rogue-ca.crt", rogue.cert.Raw)
	s.RogueCert, s.RogueKey = leaf(t, dir, "rogue", rogue, clientTemplate("rogue-domain", now.Add(-time.Hour), now.Add(24*time.Hour)))
	return s
}

func clientTemplate(cn string, from, to time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:   from,
		NotAfter:    to,
	}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("certs: serial: %v", err)
	}
	return n
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("certs: generate key: %v", err)
	}
	return k
}

func newCA(t testing.TB, cn string) issuer {
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("certs: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certs: parse CA: %v", err)
	}
	return issuer{cert: cert, key: key}
}

func leaf(t testing.TB, dir, name string, ca issuer, tmpl *x509.Certificate) (certPath, keyPath string) {
	key := newKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("certs: create %s: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("certs: marshal %s key: %v", name, err)
	}
	certPath = writeCert(t, dir, name+".crt", der)
	keyPath = filepath.Join(dir, name+".key")
	writePEM(t, keyPath, "PRIVATE KEY", keyDER, 0o600)
	return certPath, keyPath
}

func writeCert(t testing.TB, dir, name string, der []byte) string {
	p := filepath.Join(dir, name)
	writePEM(t, p, "CERTIFICATE", der, 0o644)
	return p
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatalf("certs: write %s: %v", path, err)
	}
}
