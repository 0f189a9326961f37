package acceptloop

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every connection is served, and wg.Wait after closing the listener
// returns once the loop has ended.
func TestServesEachConnectionAndWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var served atomic.Int64
	Go(ln, &wg, func(nc net.Conn) {
		defer nc.Close()
		b, _ := io.ReadAll(nc)
		served.Add(int64(len(b)))
	})
	for range 5 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); served.Load() < 15 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	ln.Close()
	wg.Wait()
	if n := served.Load(); n != 15 {
		t.Fatalf("%d bytes served, want 15 (3 from each of 5 connections)", n)
	}
}
