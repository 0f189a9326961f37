package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

func ev(tag string, t time.Time, payload string) *pipeline.Event {
	return pipeline.NewEvent(nil, tag, t, []byte(payload))
}

// numbered returns events whose payloads are the numbers from..to-1.
func numbered(from, to int) []*pipeline.Event {
	base := time.Date(2024, 5, 31, 13, 12, 8, 535000000, time.UTC)
	out := make([]*pipeline.Event, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, ev("cloud.aws.test."+strconv.Itoa(i%3), base.Add(time.Duration(i)*time.Millisecond), strconv.Itoa(i)))
	}
	return out
}

func open(t *testing.T, dir string, max int64) *Spool {
	t.Helper()
	s, err := Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// drain replays everything and returns the payloads in the order seen.
func drain(t *testing.T, s *Spool) []string {
	t.Helper()
	var got []string
	err := s.Replay(context.Background(), func(evs []*pipeline.Event) error {
		for _, e := range evs {
			got = append(got, string(e.Payload))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func seq(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d (first got %.5q)", len(got), len(want), got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestRoundTripKeepsTagTimeAndPayload(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	in := []*pipeline.Event{
		ev("cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", time.Date(2024, 5, 31, 13, 12, 8, 535000123, time.UTC), `{"eventName":"StartInstances"}`),
		ev("my.app.text", time.Time{}, "line with\ninterior LF and \x00 and \xff invalid utf-8"),
		ev("", time.Unix(-1, 5).UTC(), ""),
		ev("t", time.Date(2200, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", 3600)), strings.Repeat("p", 70000)),
	}
	if err := s.Append(in); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 4 || s.Bytes() <= 70000 {
		t.Fatalf("Len %d Bytes %d after appending 4 events", s.Len(), s.Bytes())
	}
	var out []*pipeline.Event
	err := s.Replay(context.Background(), func(evs []*pipeline.Event) error {
		out = append(out, evs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("replayed %d events, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].Tag != in[i].Tag || !out[i].Time.Equal(in[i].Time) || out[i].Time.IsZero() != in[i].Time.IsZero() || !bytes.Equal(out[i].Payload, in[i].Payload) {
			t.Errorf("event %d: got %q %v %.40q, want %q %v %.40q", i, out[i].Tag, out[i].Time, out[i].Payload, in[i].Tag, in[i].Time, in[i].Payload)
		}
		if out[i].Time.Location() != time.UTC {
			t.Errorf("event %d: time in %v, want UTC", i, out[i].Time.Location())
		}
	}
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Fatalf("after a full replay Len %d Bytes %d, want 0 0", s.Len(), s.Bytes())
	}
	if got := drain(t, s); len(got) != 0 {
		t.Fatalf("second replay gave %d events", len(got))
	}
}

func TestReplayIsOldestFirstInBoundedChunks(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	// Appends of assorted sizes, including one larger than a record.
	n := 0
	for _, k := range []int{1, 7, 2500, 3, 999, 1000, 1001, 1} {
		if err := s.Append(numbered(n, n+k)); err != nil {
			t.Fatal(err)
		}
		n += k
	}
	if s.Len() != int64(n) {
		t.Fatalf("Len %d, want %d", s.Len(), n)
	}
	var got []string
	chunks := 0
	err := s.Replay(context.Background(), func(evs []*pipeline.Event) error {
		chunks++
		if len(evs) == 0 || len(evs) > chunkMaxEvents {
			t.Errorf("chunk of %d events", len(evs))
		}
		for _, e := range evs {
			got = append(got, string(e.Payload))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, got, seq(0, n))
	if chunks < n/chunkMaxEvents {
		t.Fatalf("%d events came in %d chunks", n, chunks)
	}
}

func TestPartialReplayKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	for i := 0; i < 5000; i += 100 {
		if err := s.Append(numbered(i, i+100)); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("connection reset")
	var seen []string
	var failed []string
	calls := 0
	err := s.Replay(context.Background(), func(evs []*pipeline.Event) error {
		calls++
		if calls == 3 {
			for _, e := range evs {
				failed = append(failed, string(e.Payload))
			}
			return boom
		}
		for _, e := range evs {
			seen = append(seen, string(e.Payload))
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Replay returned %v, want the callback's error", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Errorf("error %q does not name the file", err)
	}
	if len(failed) == 0 {
		t.Fatal("the failing chunk was empty")
	}
	if s.Len() != int64(5000-len(seen)) {
		t.Fatalf("Len %d after delivering %d of 5000", s.Len(), len(seen))
	}
	// Reopen: the failed chunk and everything after it are still there,
	// and nothing delivered comes back.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, 0)
	rest := drain(t, s)
	equal(t, append(seen, rest...), seq(0, 5000))
	equal(t, rest[:len(failed)], failed)
}

func TestReplayStopsWhenContextEnds(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	for i := 0; i < 3000; i += 1000 {
		if err := s.Append(numbered(i, i+1000)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	err := s.Replay(ctx, func(evs []*pipeline.Event) error {
		for _, e := range evs {
			got = append(got, string(e.Payload))
		}
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Replay returned %v, want context.Canceled", err)
	}
	equal(t, got, seq(0, 1000))
	equal(t, drain(t, s), seq(1000, 3000))
}

func TestReplayLeavesLaterAppendsForNextTime(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	if err := s.Append(numbered(0, 10)); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.Replay(context.Background(), func(evs []*pipeline.Event) error {
		for _, e := range evs {
			got = append(got, string(e.Payload))
		}
		// An append during replay (the output spooling again) must not
		// make this replay run forever.
		return s.Append(numbered(10+len(got), 20+len(got)))
	})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, got, seq(0, 10))
	equal(t, drain(t, s), seq(20, 30))
}

func TestCap(t *testing.T) {
	s := open(t, t.TempDir(), 4096)
	if err := s.Append(numbered(0, 100)); err != nil {
		t.Fatal(err)
	}
	used := s.Bytes()
	big := []*pipeline.Event{ev("t", time.Now(), strings.Repeat("x", int(4096-used)))}
	err := s.Append(big)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append over the cap returned %v, want ErrFull", err)
	}
	if s.Len() != 100 || s.Bytes() != used {
		t.Fatalf("a refused Append changed the spool: Len %d Bytes %d", s.Len(), s.Bytes())
	}
	// Space comes back when events are replayed.
	equal(t, drain(t, s), seq(0, 100))
	if err := s.Append(big); err != nil {
		t.Fatalf("Append after draining: %v", err)
	}
}

func TestReopenKeepsEventsAndCounters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool", "devo")
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(numbered(0, 1234)); err != nil {
		t.Fatal(err)
	}
	n, b := s.Len(), s.Bytes()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory: %v %v, want mode 0700", fi.Mode(), err)
	}
	s = open(t, dir, 0)
	if s.Len() != n || s.Bytes() != b {
		t.Fatalf("after reopen Len %d Bytes %d, want %d %d", s.Len(), s.Bytes(), n, b)
	}
	if err := s.Append(numbered(1234, 1300)); err != nil {
		t.Fatal(err)
	}
	equal(t, drain(t, s), seq(0, 1300))
}

func TestSecondOpenerIsRefusedClearly(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, 0)
	old := lockTimeout
	lockTimeout = 200 * time.Millisecond
	defer func() { lockTimeout = old }()
	// flock is per open file, so a second Open in this process conflicts
	// just as another process would.
	s2, err := Open(dir, 0)
	if err == nil {
		_ = s2.Close()
		t.Fatal("second Open of a spool in use succeeded")
	}
	for _, want := range []string{filepath.Join(dir, FileName), "in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestOpenErrorNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("not a bbolt file, just text of some length"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, 0)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Fatalf("Open of a damaged file: %v", err)
	}
}

func TestCorruptRecordIsReportedAndMovedAside(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i += 10 {
		if err := s.Append(numbered(i, i+10)); err != nil {
			t.Fatal(err)
		}
	}
	// Flip one payload byte of the second record behind the spool's back.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(eventsBucket)
		v := bytes.Clone(b.Get(seqKey(2)))
		v[len(v)-6] ^= 0x01
		return b.Put(seqKey(2), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	collect := func(evs []*pipeline.Event) error {
		for _, e := range evs {
			got = append(got, string(e.Payload))
		}
		return nil
	}
	err = s.Replay(context.Background(), collect)
	if err == nil || !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "record 2") || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("Replay over a damaged record returned %v", err)
	}
	equal(t, got, seq(0, 10))
	if err := s.Replay(context.Background(), collect); err != nil {
		t.Fatal(err)
	}
	equal(t, got, append(seq(0, 10), seq(20, 30)...))
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Fatalf("Len %d Bytes %d after the damaged record was moved aside", s.Len(), s.Bytes())
	}
	_ = s.Close()
}

func TestDecodeRejectsDamage(t *testing.T) {
	rec := appendRecord(nil, numbered(0, 3))
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x40
		if _, err := decodeRecord(nil, bad); !errors.Is(err, errCorrupt) {
			t.Fatalf("flipping byte %d went unnoticed: %v", i, err)
		}
	}
	for n := 0; n < len(rec); n++ {
		if _, err := decodeRecord(nil, rec[:n]); !errors.Is(err, errCorrupt) {
			t.Fatalf("record cut to %d bytes went unnoticed: %v", n, err)
		}
	}
}

// helperEnv makes the test binary act as the writer child of the kill -9
// test instead of running tests.
const helperEnv = "SPOOL_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "writer" {
		os.Exit(helperWriter(os.Getenv("SPOOL_TEST_DIR"), os.Getenv("SPOOL_TEST_NEXT")))
	}
	os.Exit(m.Run())
}

// helperWriter appends numbered events from next on, in chunks of varying
// size, printing "A <last>" after each Append returned and, every eight
// appends, replays one chunk and prints "R <last>" after it was removed
// (removing a little less than it appends, so the spool grows).
func helperWriter(dir, nextStr string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	next, err := strconv.Atoi(nextStr)
	if err != nil {
		return fail(err)
	}
	s, err := Open(dir, 0)
	if err != nil {
		return fail(err)
	}
	stop := errors.New("one chunk")
	for i := 0; ; i++ {
		k := 1 + (i*37)%300
		if err := s.Append(numbered(next, next+k)); err != nil {
			return fail(err)
		}
		next += k
		// Unbuffered: once the parent reads it, the commit is on disk.
		if _, err := fmt.Printf("A %d\n", next-1); err != nil {
			return 1
		}
		if i%8 != 7 {
			continue
		}
		var last string
		first := true
		err := s.Replay(context.Background(), func(evs []*pipeline.Event) error {
			if !first {
				return stop
			}
			first = false
			last = string(evs[len(evs)-1].Payload)
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			return fail(err)
		}
		if _, err := fmt.Printf("R %s\n", last); err != nil {
			return 1
		}
	}
}

// TestReplayWindow: up to window chunks are handed out before the oldest
// has its fate; chunks are removed in order as they are delivered; a failed
// chunk stops the replay, the delivered chunks before it are removed, and
// it and everything after it (already sent or not) stay for the next
// replay, which sends them in order.
func TestReplayWindow(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	const n = 5500 // six chunks of at most chunkMaxEvents
	for i := 0; i < n; i += 500 {
		if err := s.Append(numbered(i, i+500)); err != nil {
			t.Fatal(err)
		}
	}
	const window = 3
	var (
		mu    sync.Mutex
		sent  [][]string
		fates []chan error // one per chunk sent: the test gives its fate
	)
	sentCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(sent)
	}
	fate := func(k int, err error) {
		mu.Lock()
		c := fates[k]
		mu.Unlock()
		c <- err
	}
	done := make(chan error, 1)
	go func() {
		done <- s.ReplayWindow(context.Background(), window, 0, func(evs []*pipeline.Event) func() error {
			var p []string
			for _, e := range evs {
				p = append(p, string(e.Payload))
			}
			c := make(chan error, 1)
			mu.Lock()
			sent = append(sent, p)
			fates = append(fates, c)
			mu.Unlock()
			return func() error { return <-c }
		})
	}()
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for sentCount() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // and no more than that
		if got := sentCount(); got != want {
			t.Fatalf("%d chunks handed out, want %d", got, want)
		}
	}
	waitCount(window) // the window is full until chunk 0 has a fate
	fate(0, nil)
	waitCount(window + 1)
	fate(1, nil)
	fate(2, nil)
	waitCount(window + 3)
	fate(3, errors.New("chunk 3 not delivered"))
	fate(4, nil) // sent before the failure was known: waited for, kept
	fate(5, nil)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "chunk 3 not delivered") {
		t.Fatalf("ReplayWindow = %v, want chunk 3's error", err)
	}
	var before []string
	for _, c := range sent[:3] {
		before = append(before, c...)
	}
	if want := seq(0, len(before)); strings.Join(before, ",") != strings.Join(want, ",") {
		t.Fatalf("the first three chunks hold %d events out of order", len(before))
	}
	if s.Len() != int64(n-len(before)) {
		t.Fatalf("spool holds %d events after the failure, want %d (only chunks 0-2 removed)", s.Len(), n-len(before))
	}
	rest := drain(t, s)
	if strings.Join(rest, ",") != strings.Join(seq(len(before), n), ",") {
		t.Fatalf("the next replay sent %d events, want %d in order from %d", len(rest), n-len(before), len(before))
	}
	if s.Len() != 0 {
		t.Fatalf("spool holds %d events after a full replay", s.Len())
	}
}

// TestFollow: Follow sends what is stored, then what is appended while it
// runs, without waiting for the chunks in flight to have their fates, and
// removes chunks in order once they do; it returns nil when ctx ends.
func TestFollow(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	if err := s.Append(numbered(0, 10)); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		got  []string
		hold = make(chan struct{}) // every wait blocks until closed
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	more := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, 100, 0, more, func(evs []*pipeline.Event) func() error {
			mu.Lock()
			for _, e := range evs {
				got = append(got, string(e.Payload))
			}
			mu.Unlock()
			return func() error { <-hold; return nil }
		})
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("the stored events", func() bool { return count() == 10 })
	for i := 10; i < 30; i += 10 { // appended while the first chunk has no fate
		if err := s.Append(numbered(i, i+10)); err != nil {
			t.Fatal(err)
		}
		more <- struct{}{}
		want := i + 10
		waitFor("the appended events", func() bool { return count() == want })
	}
	if s.Len() != 30 {
		t.Fatalf("spool holds %d events before any fate, want 30", s.Len())
	}
	close(hold)
	waitFor("the delivered chunks to be removed", func() bool { return s.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow returned %v when its context ended", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != strings.Join(seq(0, 30), ",") {
		t.Fatalf("sent %v, want 0..29 in order", got)
	}
}
