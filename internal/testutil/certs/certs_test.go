package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
)

// ServerTLS accepts the set's client certificate and refuses the rogue and
// expired ones.
func TestServerTLSVerifiesClients(t *testing.T) {
	s := New(t)
	caPEM, err := os.ReadFile(s.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, tc := range []struct {
		name      string
		cert, key string
		ok        bool
	}{
		{"client", s.ClientCert, s.ClientKey, true},
		{"rogue", s.RogueCert, s.RogueKey, false},
		{"expired", s.ExpiredCert, s.ExpiredKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := tls.LoadX509KeyPair(tc.cert, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			cc, sc := net.Pipe()
			srv := tls.Server(sc, s.ServerTLS(t))
			done := make(chan error, 1)
			go func() {
				err := srv.Handshake()
				srv.Close()
				done <- err
			}()
			cli := tls.Client(cc, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{kp}})
			_ = cli.Handshake() // with TLS 1.3 the client learns of a refusal only later
			cli.Close()
			if err := <-done; (err == nil) != tc.ok {
				t.Fatalf("server handshake error %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
