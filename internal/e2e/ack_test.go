//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/acceptloop"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// hangingReceiver is a mutual-TLS receiver that, while hung, completes the
// handshake of each connection and then reads nothing, with a tiny receive
// buffer: its TCP acknowledges a few KiB and then advertises a zero window,
// as a receiver that hangs does — and, seen from the sender, as a network
// that silently drops every packet. Released, it resets the hung
// connections (closed with data unread) and reads new ones normally.
type hangingReceiver struct {
	ln   net.Listener
	hung atomic.Bool
	mu   sync.Mutex
	held []net.Conn
	seqs map[int]int
	wg   sync.WaitGroup
}

var seqRE = regexp.MustCompile(`"seq":(\d+)`)

func startHangingReceiver(t *testing.T, c *certs.Set) *hangingReceiver {
	t.Helper()
	cfg := c.ServerTLS(t)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &hangingReceiver{ln: ln, seqs: map[int]int{}}
	r.hung.Store(true)
	acceptloop.Go(ln, &r.wg, func(nc net.Conn) { r.serve(nc, cfg) })
	t.Cleanup(func() {
		ln.Close()
		r.release()
		r.wg.Wait()
	})
	return r
}

func (r *hangingReceiver) serve(nc net.Conn, cfg *tls.Config) {
	tc := tls.Server(nc, cfg)
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return
	}
	r.mu.Lock()
	if r.hung.Load() {
		r.held = append(r.held, nc) // never read; closed by release
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	defer nc.Close()
	sc := bufio.NewScanner(tc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := seqRE.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			r.mu.Lock()
			r.seqs[n]++
			r.mu.Unlock()
		}
	}
}

// release resets every hung connection and reads the next ones.
func (r *hangingReceiver) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hung.Store(false)
	for _, c := range r.held {
		c.Close()
	}
	r.held = nil
}

func (r *hangingReceiver) hungConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

func (r *hangingReceiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

// A receiver that hangs (its TCP acknowledges nothing more) must not make
// the collector delete the SQS messages of what it wrote: the connection
// stays open without an error, and under a rule of time alone (delivered
// when the connection is alive ack_settle after the write) the messages
// were deleted after a second and their events lost when the receiver was
// restarted. With the acknowledgement rule they wait, and once the receiver
// is restarted (the hung connections reset) every event arrives and the
// queue empties.
func TestHungReceiverKeepsMessages(t *testing.T) {
	const n = 30
	e := newEnv(t)
	r := startHangingReceiver(t, e.cert)
	q := e.queue("e2e-hung", nil)
	pad := strings.Repeat("x", 8000) // each event alone overflows the hung window
	for i := range n {
		e.send(q, fmt.Sprintf(`{"version":"0","id":"ev-%d","detail-type":"Demo","source":"demo.app","account":"123456789012","time":"2024-05-31T13:20:11Z","region":"us-east-1","resources":[],"detail":{"seq":%d,"pad":%q}}`, i, i, pad), "")
	}
	cfg := e.writeConfig("", e.devoOutput(r.ln.Addr().(*net.TCPAddr).Port, e.cert.ClientCert, e.cert.ClientKey, ""), `
      service-events-all: {sqs_queue_name: e2e-hung, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 60}
`)
	p := e.start(cfg)
	eventually(t, 20*time.Second, "a hung connection", func() bool { return r.hungConns() >= 1 })
	// Well past the start-up probe and ack_settle (and the 1 s of the
	// old rule), short of sending_timeout (5 s).
	time.Sleep(3 * time.Second)
	if left := e.pending(q); left != n {
		t.Fatalf("%d of %d messages deleted while the receiver had acknowledged none of their events", n-left, n)
	}
	r.release()
	eventually(t, 60*time.Second, "every event at the receiver", func() bool { return r.received() == n })
	eventually(t, 30*time.Second, "the queue empty", func() bool { return e.pending(q) == 0 })
	if code := p.wait(0); code != -1 {
		t.Fatalf("collector exited with %d", code)
	}
	terminate(t, p)
}
