package rsyslog

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

func clientConfig(t *testing.T, c *certs.Set, cert, key string) *tls.Config {
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{kp}}
}

// TestReceiverRoundTrip checks the receiver itself: TLS and plain lines
// arrive with tag and payload, octet counting keeps an LF, a restart keeps
// the ports, and connections are counted.
func TestReceiverRoundTrip(t *testing.T) {
	c := certs.New(t)
	s := Start(t, Options{Certs: c, Plain: true})

	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.TLSPort), clientConfig(t, c, c.ClientCert, c.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "<14>Jan  1 00:00:00 h cloud.aws.a.b.1: {\"k\":\"ñ\"}\n")
	multi := "<14>Jan  1 00:00:00 h t: a\nb\n"
	fmt.Fprintf(conn, "%d %s", len(multi), multi)
	conn.Close()
	// Stopping drops what rsyslogd has not read yet: wait for it first.
	if got := s.WaitMessages(2, 10*time.Second); len(got) != 2 {
		t.Fatalf("before restart: %+v", got)
	}

	s.Stop()
	s.Start()
	pc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.PlainPort))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(pc, "<14>Jan  1 00:00:00 h plain.tag: x\ty\n")
	pc.Close()

	msgs := s.WaitMessages(3, 10*time.Second)
	want := []Message{
		{Tag: "cloud.aws.a.b.1", Msg: " {\"k\":\"ñ\"}", Raw: "<14>Jan  1 00:00:00 h cloud.aws.a.b.1: {\"k\":\"ñ\"}"},
		{Tag: "t", Msg: " a\nb", Raw: "<14>Jan  1 00:00:00 h t: a\nb"},
		{Tag: "plain.tag", Msg: " x\ty", Raw: "<14>Jan  1 00:00:00 h plain.tag: x\ty"},
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages %+v, want %d", len(msgs), msgs, len(want))
	}
	for i := range want {
		if msgs[i] != want[i] {
			t.Errorf("message %d: got %+v, want %+v", i, msgs[i], want[i])
		}
	}
	if got := msgs[0].Payload(); got != `{"k":"ñ"}` {
		t.Errorf("payload %q", got)
	}
	if n := s.Connections(); n != 2 {
		t.Errorf("connections = %d, want 2\n%s", n, s.Log())
	}
}
