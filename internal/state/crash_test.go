package state

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// helperEnv makes the test binary act as a child process instead of running
// tests; its value says which role.
const helperEnv = "STATE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(helperWriter(os.Getenv("STATE_TEST_DIR")))
	case "holder":
		os.Exit(helperHolder(os.Getenv("STATE_TEST_DIR")))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper role")
		os.Exit(2)
	}
}

var counterKey = Key{"aws", "audit-events-all", "us-east-2", "counter"}

// helperWriter resumes from the stored counter and writes increasing values
// as fast as it can, printing each value only after Put returned. Between
// counter writes it churns other keys of varying size so pages are
// allocated, split and freed while the parent kills it.
func helperWriter(dir string) int {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n := uint64(0)
	if v, ok, err := s.Get(counterKey); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	} else if ok {
		if n, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	for {
		n++
		if err := s.Put(counterKey, []byte(strconv.FormatUint(n, 10))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Unbuffered: once the parent reads n, the commit of n is on disk.
		if _, err := fmt.Fprintf(os.Stdout, "%d\n", n); err != nil {
			return 1
		}
		churn := Key{"aws", "churn", "us-east-2", strconv.FormatUint(n%97, 10)}
		if err := s.Put(churn, []byte(strings.Repeat("x", int(n%13)*700))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if n%5 == 0 {
			if err := s.Delete(Key{"aws", "churn", "us-east-2", strconv.FormatUint((n+40)%97, 10)}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
}

// helperHolder opens the store, says so, and keeps it open until its stdin
// closes.
func helperHolder(dir string) int {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func helperCmd(t *testing.T, role, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, "STATE_TEST_DIR="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

// checkConsistent runs bbolt's own page-level consistency check.
func checkConsistent(t *testing.T, s *Bolt) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("consistency check: %v", err)
	}
}

func TestSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var lastCommitted uint64
	totalReported := 0
	for i := range 20 {
		cmd := helperCmd(t, "writer", dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var seen atomic.Uint64
		lines := atomic.Int64{}
		done := make(chan error, 1)
		writing := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				v, err := strconv.ParseUint(sc.Text(), 10, 64)
				if err != nil {
					done <- fmt.Errorf("child printed %q", sc.Text())
					return
				}
				seen.Store(v)
				if lines.Add(1) == 1 {
					close(writing)
				}
			}
			done <- sc.Err()
		}()
		// Random moments: every fourth kill counts from the child's start,
		// so it may land while the store is being opened (buckets created);
		// the others count from its first commit, so they land in the write
		// loop however slowly the machine starts processes.
		if i%4 != 0 {
			select {
			case <-writing:
			case <-time.After(30 * time.Second):
				t.Fatalf("iteration %d: the child committed nothing within 30s", i)
			}
		}
		time.Sleep(time.Duration(rng.IntN(100_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Everything printed before the kill is still in the pipe: read it
		// all before comparing.
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("iteration %d: child was not killed by the signal: %v", i, cmd.ProcessState)
		}
		reported := seen.Load()
		totalReported += int(lines.Load())
		if reported > 0 {
			lastCommitted = reported
		}

		s, err := Open(dir)
		if err != nil {
			t.Fatalf("iteration %d: reopen after kill: %v", i, err)
		}
		checkConsistent(t, s)
		v, ok, err := s.Get(counterKey)
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		var stored uint64
		if ok {
			if stored, err = strconv.ParseUint(string(v), 10, 64); err != nil {
				t.Fatalf("iteration %d: stored value %q: %v", i, v, err)
			}
		}
		if stored < lastCommitted {
			t.Fatalf("iteration %d: stored %d, but the child reported %d as committed", i, stored, lastCommitted)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		lastCommitted = stored
	}
	// Guard against a vacuous pass where every child died before writing.
	if totalReported < 20 {
		t.Fatalf("children reported only %d commits over 20 runs; the kills did not land in the write loop", totalReported)
	}
	t.Logf("%d commits reported, final counter %d", totalReported, lastCommitted)
}

func TestOpenFailsWhileAnotherProcessHoldsTheStore(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd(t, "holder", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("holder said %q, %v", line, err)
	}

	start := time.Now()
	s, err := Open(dir)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded while another process holds the store")
	}
	if waited := time.Since(start); waited < lockTimeout/2 {
		t.Errorf("Open gave up after %v; it should wait for the lock about %v", waited, lockTimeout)
	}
	for _, want := range []string{filepath.Join(dir, FileName), "another collector is running with the same persistence directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}

	// Once the holder exits, the lock is released.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("Open after the holder exited: %v", err)
	}
	s.Close()
}
