package spool

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// rssFile is this process's resident file-backed memory (RssFile), in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// Spooling 48 MB and replaying it leaves almost none of the file resident in
// the process: bbolt reads through a file mapping, and a page read stays in
// the process's resident size until dropped. Without dropResident the
// process grows by about the spool's size (twice over: the append that
// rewrites a leaf reads its neighbour, the replay reads every record), which
// in the collector made a 1 GB spool a 1.2 GB process.
func TestSpoolPagesDoNotStayResident(t *testing.T) {
	const (
		records = 48
		perRec  = 1000
		payload = 1000 // bytes: 48 records of about 1 MB
		bound   = 8 << 20
	)
	s := open(t, t.TempDir(), 0)
	body := strings.Repeat("x", payload)
	base := time.Date(2024, 5, 31, 13, 12, 8, 0, time.UTC)
	start := rssFile(t)
	var peak int64
	for r := range records {
		evs := make([]*pipeline.Event, perRec)
		for i := range evs {
			evs[i] = ev("cloud.aws.test", base, strconv.Itoa(r*perRec+i)+body)
		}
		if err := s.Append(evs); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, rssFile(t)-start)
	}
	afterAppend, spooled := peak, s.Bytes()
	n := 0
	// A window of chunks in flight, as the Devo output replays: at the end
	// the removals of the whole window follow the last read.
	err := s.ReplayWindow(context.Background(), 32, 0, func(evs []*pipeline.Event) func() error {
		for _, e := range evs {
			if want := strconv.Itoa(n); !strings.HasPrefix(string(e.Payload), want) || len(e.Payload) != len(want)+payload {
				t.Fatalf("event %d: payload %.20q…", n, e.Payload)
			}
			n++
		}
		peak = max(peak, rssFile(t)-start)
		return func() error { return nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	peak = max(peak, rssFile(t)-start)
	if n != records*perRec {
		t.Fatalf("replayed %d events, want %d", n, records*perRec)
	}
	t.Logf("%d MB spooled; resident file pages grew by at most %.1f MB while appending, %.1f MB over the whole run",
		spooled>>20, float64(afterAppend)/(1<<20), float64(peak)/(1<<20))
	if peak > bound {
		t.Errorf("the spool file's pages kept %d MB resident, want at most %d MB", peak>>20, bound>>20)
	}
}

// dropPages drops the pages of a value read through the mapping, and leaves
// alone memory that is not the mapping's.
func TestDropPagesOfOneValue(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	evs := make([]*pipeline.Event, 900)
	for i := range evs {
		evs[i] = ev("cloud.aws.test", time.Time{}, strings.Repeat("y", 1000)) // one record of about 1 MB
	}
	if err := s.Append(evs); err != nil {
		t.Fatal(err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		_, v := tx.Bucket(eventsBucket).Cursor().First()
		sum := 0
		for _, c := range v { // read it all: every page faults in
			sum += int(c)
		}
		before := rssFile(t)
		dropPages(tx, v)
		after := rssFile(t)
		t.Logf("a %d KB value: resident file pages %d KB → %d KB (checksum %d)", len(v)>>10, before>>10, after>>10, sum)
		if before-after < int64(len(v))*3/4 {
			t.Errorf("dropPages freed %d KB of a %d KB value's pages", (before-after)>>10, len(v)>>10)
		}
		// Heap memory is left alone (MADV_DONTNEED would zero it).
		heap := bytes.Repeat([]byte{7}, 64<<10)
		dropPages(tx, heap)
		if heap[len(heap)/2] != 7 {
			t.Error("dropPages zeroed heap memory")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
