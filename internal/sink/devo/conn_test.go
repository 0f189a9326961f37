package devo

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// TestSockGathersTLSRecords: between hold and release, the records crypto/tls
// writes for one 64 KiB write stay in the sock and then go out in one call;
// the receiver reads the same bytes; a failed release reports the error the
// TLS layer could not see.
func TestSockGathersTLSRecords(t *testing.T) {
	c := certs.New(t)
	srvCfg := c.ServerTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer nc.Close()
		b, _ := io.ReadAll(tls.Server(nc, srvCfg))
		got <- b
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sk := &sock{TCPConn: raw.(*net.TCPConn)}
	tc := tls.Client(sk, c.ClientTLS(t))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}

	msg := make([]byte, 64<<10)
	_, _ = rand.Read(msg)
	before := sk.written.Load()
	sk.hold()
	if _, err := tc.Write(msg); err != nil {
		t.Fatal(err)
	}
	if w := sk.written.Load(); w != before {
		t.Fatalf("%d bytes went to the socket before release", w-before)
	}
	if len(sk.held) < len(msg) {
		t.Fatalf("held %d bytes, want the %d written and their record headers", len(sk.held), len(msg))
	}
	if err := sk.release(); err != nil {
		t.Fatal(err)
	}
	if w := sk.written.Load() - before; w < int64(len(msg)) {
		t.Fatalf("release wrote %d bytes, want at least %d", w, len(msg))
	}
	// Outside hold, writes go straight through.
	if _, err := tc.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if len(sk.held) != 0 {
		t.Fatalf("%d bytes held outside hold", len(sk.held))
	}
	// A write that fails at release is reported there: crypto/tls already
	// returned success for it.
	_ = sk.TCPConn.Close()
	sk.hold()
	if _, err := tc.Write([]byte("after close")); err != nil {
		t.Fatalf("write under hold: %v", err)
	}
	if err := sk.release(); err == nil {
		t.Fatal("release on a closed socket: no error")
	}
	if b := <-got; !bytes.Equal(b, append(msg, "tail"...)) {
		t.Fatalf("receiver read %d bytes, want the %d written", len(b), len(msg)+4)
	}
}
