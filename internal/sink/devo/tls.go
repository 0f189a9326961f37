package devo

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// tlsConfig builds the client configuration of devo-output.md §2 and §15.1:
// TLS 1.2–1.3, the server chain always verified against Chain, the name
// checked only with CheckHostname, SNI for DNS names, and the client
// certificate from Cert/Key. Errors name the file at fault.
func tlsConfig(o *Options) (*tls.Config, error) {
	if o.Chain == "" {
		return nil, errors.New("tls needs a chain file (the CA bundle that verifies the server)")
	}
	pemData, err := os.ReadFile(o.Chain)
	if err != nil {
		return nil, fmt.Errorf("read chain file %q: %w", o.Chain, err)
	}
	roots := x509.NewCertPool()
	n := 0
	for rest := pemData; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("chain file %q: certificate %d: %w", o.Chain, n+1, err)
		}
		roots.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("chain file %q holds no PEM certificate", o.Chain)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		MaxVersion: tls.VersionTLS13,
		RootCAs:    roots,
	}
	if net.ParseIP(o.Address) == nil {
		cfg.ServerName = o.Address
	} else if o.CheckHostname {
		cfg.ServerName = o.Address // Go matches IP SANs; no SNI is sent for an IP
	}
	switch {
	case o.Cert != "" && o.Key != "":
		certPEM, err := os.ReadFile(o.Cert)
		if err != nil {
			return nil, fmt.Errorf("read client certificate file %q: %w", o.Cert, err)
		}
		keyPEM, err := os.ReadFile(o.Key)
		if err != nil {
			return nil, fmt.Errorf("read client key file %q: %w", o.Key, err)
		}
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %q with key %q: %w", o.Cert, o.Key, err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	case o.Cert != "" || o.Key != "":
		return nil, fmt.Errorf("client certificate %q and key %q must be set together", o.Cert, o.Key)
	}
	if !o.CheckHostname {
		// Verify the chain with no name constraint (the collector SDK turns
		// hostname checks off; Devo's certificates may not name the endpoint).
		chain := o.Chain
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots, chain)
		}
	}
	return cfg, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool, chainFile string) error {
	if len(raw) == 0 {
		return errors.New("server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parse server certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verify server certificate %q against chain file %q: %w",
			certs[0].Subject.String(), chainFile, err)
	}
	return nil
}

// certAlert reports whether err is a TLS alert from the peer about our
// certificate (bad, unsupported, revoked, expired or unknown certificate,
// unknown CA, certificate required) and returns its text. Go reports a
// received alert as a *net.OpError with Op "remote error" whose Err is the
// unexported alert type; its text is the only stable handle.
func certAlert(err error) (string, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return "", false
	}
	msg := op.Err.Error()
	if strings.Contains(msg, "certificate") || strings.Contains(msg, "access denied") {
		return msg, true
	}
	return "", false
}
