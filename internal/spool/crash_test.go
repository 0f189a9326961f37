package spool

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// readAll decodes every stored event without removing any.
func readAll(t *testing.T, s *Spool) []int {
	t.Helper()
	var out []int
	err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt consistency check: %w", err)
		}
		return tx.Bucket(eventsBucket).ForEach(func(k, v []byte) error {
			evs, err := decodeRecord(nil, v)
			if err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			for _, e := range evs {
				n, err := strconv.Atoi(string(e.Payload))
				if err != nil {
					return fmt.Errorf("record %x: payload %q", k, e.Payload)
				}
				out = append(out, n)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSurvivesKill9 kills a writer child at random moments, in the middle
// of appends and of replay deletes, and checks after each kill that the
// spool opens cleanly and holds one contiguous run of numbers: nothing the
// child reported appended is missing, nothing it reported removed is back,
// nothing is duplicated or damaged.
func TestSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test starts child processes")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	next := 0    // the first number the next child writes
	removed := 0 // every number below this was reported removed
	reportedA, reportedR := 0, 0
	const kills = 15
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=writer", "SPOOL_TEST_DIR="+dir, "SPOOL_TEST_NEXT="+strconv.Itoa(next))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lastA, lastR := -1, -1
		done := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				kind, num, ok := strings.Cut(sc.Text(), " ")
				n, err := strconv.Atoi(num)
				if !ok || err != nil {
					done <- fmt.Errorf("child printed %q", sc.Text())
					return
				}
				if kind == "A" {
					lastA = n
					reportedA++
				} else {
					lastR = n
					reportedR++
				}
			}
			done <- sc.Err()
		}()
		// Some kills land while the child is still opening, most in the loop.
		time.Sleep(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Everything printed before the kill is still in the pipe.
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: child was not killed by the signal: %v", i, cmd.ProcessState)
		}
		if lastR >= 0 {
			removed = lastR + 1
		}

		s, err := Open(dir, 0)
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		got := readAll(t, s)
		if s.Len() != int64(len(got)) {
			t.Fatalf("kill %d: Len %d but %d events stored", i, s.Len(), len(got))
		}
		if len(got) > 0 {
			first, last := got[0], got[len(got)-1]
			for j, n := range got {
				if n != first+j {
					t.Fatalf("kill %d: event %d is %d, want %d: the run is not contiguous", i, j, n, first+j)
				}
			}
			if first < removed {
				t.Fatalf("kill %d: %d is stored but the child reported it removed", i, first)
			}
			// A removal the kill kept the child from reporting takes one
			// chunk at most.
			if first-removed > chunkMaxEvents {
				t.Fatalf("kill %d: first stored %d, but only up to %d was reported removed", i, first, removed-1)
			}
			if last < lastA {
				t.Fatalf("kill %d: last stored %d, but the child reported %d appended", i, last, lastA)
			}
			// Removals only take the oldest; the run ends where the
			// writes ended, and the next child continues there.
			next = last + 1
			removed = first
		} else {
			if lastA+1-removed > chunkMaxEvents {
				t.Fatalf("kill %d: spool empty, but %d was reported appended and only up to %d removed", i, lastA, removed-1)
			}
			next = max(next, lastA+1, removed)
			removed = next
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Guard against a vacuous pass where every child died before writing.
	if reportedA < kills || reportedR < 2 {
		t.Fatalf("children reported %d appends and %d removals over %d runs; the kills did not land in the loop", reportedA, reportedR, kills)
	}
	t.Logf("%d appends and %d removals reported, %d numbers written", reportedA, reportedR, next)
}
