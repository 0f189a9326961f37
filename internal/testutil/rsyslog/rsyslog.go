// Package rsyslog runs a private rsyslogd as a real syslog receiver for
// output tests: a mutual-TLS imtcp listener (gtls, x509/certvalid) and
// optionally a plain TCP one, both on 127.0.0.1, writing every message as one
// JSON object per line to a file the test reads back.
//
// The daemon runs in the foreground with its own configuration, work
// directory and pid file; the system rsyslog is never touched. Stop and Start
// let a test simulate an outage on the same ports; the test's cleanup stops
// it.
package rsyslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// Options choose the listeners.
type Options struct {
	// Certs gives the CA that verifies clients and the server certificate.
	// Nil means no TLS listener.
	Certs *certs.Set
	// Plain adds a plain TCP listener.
	Plain bool
}

// Message is one received syslog message.
type Message struct {
	Tag string `json:"tag"` // the program name: the Devo tag
	Msg string `json:"msg"` // the MSG part as rsyslog parsed it (it keeps the space after "TAG:")
	Raw string `json:"raw"` // the whole line as received, without framing and final LF
}

// Payload is the message text without the single space that follows "TAG:".
func (m Message) Payload() string { return strings.TrimPrefix(m.Msg, " ") }

// Server is a running (or stopped) private rsyslogd.
type Server struct {
	t         testing.TB
	dir       string
	conf      string
	events    string
	internal  string
	TLSPort   int // 0 without Certs
	PlainPort int // 0 without Plain

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var installOnce sync.Once
var installErr error

// ensureInstalled installs rsyslog and its GnuTLS driver from the Debian
// repositories when rsyslogd is missing (CI starts from a clean machine).
func ensureInstalled() error {
	installOnce.Do(func() {
		if _, err := exec.LookPath("rsyslogd"); err == nil {
			if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"); err == nil {
				return
			}
		}
		out, err := exec.Command("apt-get", "install", "-y", "rsyslog", "rsyslog-gnutls").CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("rsyslogd is not installed and apt-get install -y rsyslog rsyslog-gnutls failed: %v\n%s", err, out)
			return
		}
		if _, err := exec.LookPath("rsyslogd"); err != nil {
			installErr = fmt.Errorf("rsyslogd not found after installing rsyslog: %v", err)
		}
	})
	return installErr
}

// Start writes a configuration, starts rsyslogd and waits until it listens.
// It fails the test (never skips) when rsyslogd cannot be installed or run.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if err := ensureInstalled(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{
		t:        t,
		dir:      dir,
		conf:     filepath.Join(dir, "rsyslog.conf"),
		events:   filepath.Join(dir, "events.jsonl"),
		internal: filepath.Join(dir, "internal.log"),
	}
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	var inputs strings.Builder
	if opts.Certs != nil {
		s.TLSPort = freePort(t)
		fmt.Fprintf(&inputs, `input(type="imtcp" address="127.0.0.1" port="%d" ruleset="events"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid"
  streamDriver.CAFile="%s" streamDriver.CertFile="%s" streamDriver.KeyFile="%s")
`, s.TLSPort, opts.Certs.CA, opts.Certs.ServerCert, opts.Certs.ServerKey)
	}
	if opts.Plain {
		s.PlainPort = freePort(t)
		fmt.Fprintf(&inputs, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"events\")\n", s.PlainPort)
	}
	if inputs.Len() == 0 {
		t.Fatal("rsyslog: neither a TLS nor a plain listener requested")
	}
	conf := fmt.Sprintf(`global(workDirectory="%s" processInternalMessages="on" maxMessageSize="8m"
  parser.escapeControlCharactersOnReceive="off")
module(load="imtcp" NotifyOnConnectionOpen="on" NotifyOnConnectionClose="on" MaxSessions="1000")
template(name="ev" type="string"
  string="{\"tag\":\"%%programname:::json%%\",\"msg\":\"%%msg:::json%%\",\"raw\":\"%%rawmsg:::json%%\"}\n")
ruleset(name="events") { action(type="omfile" file="%s" template="ev") }
%s
action(type="omfile" file="%s")
`, filepath.Join(dir, "work"), s.events, inputs.String(), s.internal)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rsyslogd", "-N1", "-f", s.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslog: configuration rejected: %v\n%s", err, out)
	}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("rsyslog: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start (re)starts the daemon on the same ports and waits until every
// listener is up. Starting a running server is a no-op.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command("rsyslogd", "-n", "-f", s.conf, "-i", filepath.Join(s.dir, "rsyslogd.pid"))
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("rsyslog: start rsyslogd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !s.listening() {
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("rsyslog: rsyslogd exited at start-up: %s", stderr.String())
		case <-deadline:
			s.t.Fatalf("rsyslog: rsyslogd not listening after 15s: %s", stderr.String())
		case <-tick.C:
		}
	}
}

// listening reports whether every configured port is in LISTEN state, read
// from /proc/net/tcp so that checking opens no connection the test counts.
func (s *Server) listening() bool {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := map[int]bool{}
	if s.TLSPort != 0 {
		want[s.TLSPort] = false
	}
	if s.PlainPort != 0 {
		want[s.PlainPort] = false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" || !strings.HasPrefix(f[1], "0100007F:") {
			continue
		}
		p, err := strconv.ParseInt(strings.TrimPrefix(f[1], "0100007F:"), 16, 32)
		if err != nil {
			continue
		}
		if _, ok := want[int(p)]; ok {
			want[int(p)] = true
		}
	}
	for _, ok := range want {
		if !ok {
			return false
		}
	}
	return true
}

// Stop terminates the daemon (SIGTERM, SIGKILL after 10 s) and waits for
// it. Stopping a stopped server is a no-op.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Messages returns every message received so far, in file order.
func (s *Server) Messages() []Message {
	s.t.Helper()
	data, err := os.ReadFile(s.events)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		s.t.Fatalf("rsyslog: read events: %v", err)
	}
	var out []Message
	for line := range bytes.Lines(data) {
		if !bytes.HasSuffix(line, []byte("\n")) {
			break // a record being written right now
		}
		var m Message
		if err := json.Unmarshal(line, &m); err != nil {
			s.t.Fatalf("rsyslog: decode %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Bytes is the size of the received-messages file so far: a progress
// measure cheap enough to poll every few milliseconds while thousands of
// messages arrive.
func (s *Server) Bytes() int64 {
	fi, err := os.Stat(s.events)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WaitMessages waits until at least n messages arrived or timeout passes,
// and returns what arrived.
func (s *Server) WaitMessages(n int, timeout time.Duration) []Message {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := s.Messages()
		if len(msgs) >= n || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Connections is the number of client connections the daemon accepted so
// far, over all its runs.
func (s *Server) Connections() int {
	return s.countInternal("imtcp: connection established")
}

// Log returns the daemon's own messages (connection notices, TLS errors).
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.internal)
	return string(data)
}

func (s *Server) countInternal(substr string) int {
	return strings.Count(s.Log(), substr)
}
