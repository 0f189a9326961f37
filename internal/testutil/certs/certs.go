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
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
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
	s, err := Generate(t.TempDir())
	if err != nil {
		t.Fatalf("certs: %v", err)
	}
	return s
}

// Generate writes a Set into dir, for programs that are not tests (the
// benchmark harness). The caller removes dir.
func Generate(dir string) (*Set, error) {
	var err error
	s := &Set{Dir: dir}
	ca, err := newCA("devo-aws-collector test CA")
	if err != nil {
		return nil, err
	}
	if s.CA, err = writeCert(dir, "ca.crt", ca.cert.Raw); err != nil {
		return nil, err
	}
	now := time.Now()
	if s.ServerCert, s.ServerKey, err = leaf(dir, "server", ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
	}); err != nil {
		return nil, err
	}
	if s.ClientCert, s.ClientKey, err = leaf(dir, "client", ca, clientTemplate("test-domain", now.Add(-time.Hour), now.Add(24*time.Hour))); err != nil {
		return nil, err
	}
	if s.ExpiredCert, s.ExpiredKey, err = leaf(dir, "expired", ca, clientTemplate("test-domain-expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour))); err != nil {
		return nil, err
	}
	rogue, err := newCA("rogue test CA")
	if err != nil {
		return nil, err
	}
	if s.RogueCA, err = writeCert(dir, "rogue-ca.crt", rogue.cert.Raw); err != nil {
		return nil, err
	}
	if s.RogueCert, s.RogueKey, err = leaf(dir, "rogue", rogue, clientTemplate("rogue-domain", now.Add(-time.Hour), now.Add(24*time.Hour))); err != nil {
		return nil, err
	}
	return s, nil
}

func clientTemplate(cn string, from, to time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:   from,
		NotAfter:    to,
	}
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n, nil
}

func newCA(cn string) (issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issuer{}, fmt.Errorf("generate key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return issuer{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return issuer{}, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return issuer{}, fmt.Errorf("parse CA: %w", err)
	}
	return issuer{cert: cert, key: key}, nil
}

func leaf(dir, name string, ca issuer, tmpl *x509.Certificate) (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate %s key: %w", name, err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return "", "", err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", fmt.Errorf("create %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("marshal %s key: %w", name, err)
	}
	if certPath, err = writeCert(dir, name+".crt", der); err != nil {
		return "", "", err
	}
	keyPath = filepath.Join(dir, name+".key")
	return certPath, keyPath, writePEM(keyPath, "PRIVATE KEY", keyDER, 0o600)
}

func writeCert(dir, name string, der []byte) (string, error) {
	p := filepath.Join(dir, name)
	return p, writePEM(p, "CERTIFICATE", der, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ServerTLS returns the TLS settings of a mutual-TLS receiver for this set:
// it presents ServerCert and requires a client certificate signed by CA (the
// collector's ClientCert passes; RogueCert and ExpiredCert fail). It fails t
// when the files cannot be read.
func (s *Set) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	kp, pool := s.pair(t, s.ServerCert, s.ServerKey)
	return &tls.Config{Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

// ClientTLS returns the TLS settings of the collector's side for this set:
// it presents ClientCert and verifies the server (127.0.0.1) against CA.
// It fails t when the files cannot be read.
func (s *Set) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	kp, pool := s.pair(t, s.ClientCert, s.ClientKey)
	return &tls.Config{Certificates: []tls.Certificate{kp}, RootCAs: pool, ServerName: "127.0.0.1"}
}

// pair loads a certificate and key, and the set's CA as a pool.
func (s *Set) pair(t testing.TB, cert, key string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(s.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", s.CA)
	}
	return kp, pool
}
