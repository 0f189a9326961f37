package coord

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/dynalite"
)

// testLease is short so that expiry and takeover happen within seconds.
const testLease = 2 * time.Second

var _ lease.Holder = (*Coordinator)(nil)

func testLog(t *testing.T, owner string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test", t.Name(), "me", owner)
	}
	return slog.New(slog.DiscardHandler)
}

func open(t *testing.T, srv *dynalite.Server, table, owner string) *Coordinator {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, Config{
		Table: table, Endpoint: srv.URL, Region: dynalite.Region,
		LeaseDuration: testLease, Owner: owner, AWS: srv.Config(), Log: testLog(t, owner),
	})
	if err != nil {
		t.Fatalf("open %s: %v", owner, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func keys(n int) []state.Key {
	var ks []state.Key
	for i := range n {
		// A "/" in a field (as in log group names) must not confuse keys.
		ks = append(ks, state.Key{Input: "in", Service: "logs", Region: "us-east-1", Sub: fmt.Sprintf("/aws/group/%d", i)})
	}
	return ks
}

// tracker records which collector runs which stream, and whether a stream
// ever ran in two places at once.
type tracker struct {
	mu      sync.Mutex
	running map[state.Key]map[string]bool
	double  []string
	started map[state.Key]time.Time // last start of each key
}

func newTracker() *tracker {
	return &tracker{running: map[state.Key]map[string]bool{}, started: map[state.Key]time.Time{}}
}

func (tr *tracker) fn(owner string, k state.Key) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		tr.mu.Lock()
		if tr.running[k] == nil {
			tr.running[k] = map[string]bool{}
		}
		if len(tr.running[k]) > 0 {
			tr.double = append(tr.double, fmt.Sprintf("%s started %s while %v ran it", owner, k, tr.running[k]))
		}
		tr.running[k][owner] = true
		tr.started[k] = time.Now()
		tr.mu.Unlock()
		<-ctx.Done()
		tr.mu.Lock()
		delete(tr.running[k], owner)
		tr.mu.Unlock()
		return nil
	}
}

// split returns who runs each key, and false unless every key runs in
// exactly one place.
func (tr *tracker) split(ks []state.Key) (map[string][]state.Key, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	by := map[string][]state.Key{}
	ok := true
	for _, k := range ks {
		if len(tr.running[k]) != 1 {
			ok = false
		}
		for o := range tr.running[k] {
			by[o] = append(by[o], k)
		}
	}
	return by, ok
}

func (tr *tracker) doubles() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.double...)
}

// runAll starts every key on c, as a collector with the whole configuration
// does; the streams stop when the test ends.
func runAll(t *testing.T, c *Coordinator, ks []state.Key, tr *tracker) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, k := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx, k, tr.fn(c.Owner(), k)); err != nil {
				t.Errorf("run %s on %s: %v", k, c.Owner(), err)
			}
		}()
	}
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, limit)
	return 0
}

// balanced reports whether every key runs exactly once and each owner runs
// at least one.
func balanced(tr *tracker, ks []state.Key, owners ...string) func() bool {
	return func() bool {
		by, ok := tr.split(ks)
		if !ok {
			return false
		}
		for _, o := range owners {
			if len(by[o]) == 0 {
				return false
			}
		}
		return true
	}
}

func TestOpenCreatesTable(t *testing.T) {
	srv := dynalite.Start(t)
	cfg := Config{Table: "created", Endpoint: srv.URL, AWS: srv.Config()}
	if st, err := Describe(context.Background(), cfg); err != nil || st.Exists {
		t.Fatalf("describe before open: %+v %v, want a missing table", st, err)
	}
	c := open(t, srv, "created", "a")
	db := dynamodb.NewFromConfig(srv.Config())
	out, err := db.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("created")})
	if err != nil {
		t.Fatal(err)
	}
	if out.Table.TableStatus != types.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", out.Table.TableStatus)
	}
	if bm := out.Table.BillingModeSummary; bm == nil || bm.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode %+v, want PAY_PER_REQUEST", bm)
	}
	// A second collector opens the existing table.
	c2 := open(t, srv, "created", "b")
	k := keys(1)[0]
	runAll(t, c2, []state.Key{k}, newTracker())
	waitFor(t, 10*time.Second, "lease held", func() bool { return len(c2.Held()) == 1 })
	st, err := Describe(context.Background(), cfg)
	if err != nil || !st.Exists || st.Status != "ACTIVE" || st.Leases != 1 || st.Owned != 1 {
		t.Fatalf("describe: %+v %v, want an active table with 1 held lease", st, err)
	}
	_ = c
}

func TestSplitAcrossThree(t *testing.T) {
	srv := dynalite.Start(t)
	ks := keys(9)
	tr := newTracker()
	var cs []*Coordinator
	for _, o := range []string{"a", "b", "c"} {
		c := open(t, srv, "split", o)
		cs = append(cs, c)
		runAll(t, c, ks, tr)
	}
	took := waitFor(t, 30*time.Second, "9 streams split across 3", balanced(tr, ks, "a", "b", "c"))
	by, _ := tr.split(ks)
	t.Logf("split after %v: a=%d b=%d c=%d", took.Round(10*time.Millisecond), len(by["a"]), len(by["b"]), len(by["c"]))
	// The split holds: wait two more lease durations and look again.
	time.Sleep(2 * testLease)
	if !balanced(tr, ks, "a", "b", "c")() {
		by, _ := tr.split(ks)
		t.Errorf("split did not hold: %v", by)
	}
	for _, c := range cs {
		if n := len(c.Held()); n < 1 || n > 4 {
			t.Errorf("%s holds %d leases, want 1..4", c.Owner(), n)
		}
	}
	if d := tr.doubles(); len(d) > 0 {
		t.Errorf("a stream ran twice at once: %v", d)
	}
}

func TestKilledCollectorIsTakenOver(t *testing.T) {
	srv := dynalite.Start(t)
	ks := keys(6)
	tr := newTracker()
	cs := map[string]*Coordinator{}
	for _, o := range []string{"a", "b", "c"} {
		cs[o] = open(t, srv, "kill", o)
		runAll(t, cs[o], ks, tr)
	}
	waitFor(t, 30*time.Second, "6 streams split across 3", balanced(tr, ks, "a", "b", "c"))

	// b saves a checkpoint for each of its streams, then dies: no release,
	// no more renewals. Its streams are left running (a dead process's
	// pulls no longer matter; the tracker just stops counting them).
	victim := cs["b"]
	orphans := victim.Held()
	for _, k := range orphans {
		if err := victim.Store().Put(k, []byte("from b "+k.Sub)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	victim.halt()
	killed := time.Now()
	tr.mu.Lock()
	for _, k := range orphans {
		delete(tr.running[k], "b")
	}
	tr.mu.Unlock()

	took := waitFor(t, 4*testLease, "b's streams taken over", func() bool {
		by, ok := tr.split(ks)
		return ok && len(by["b"]) == 0
	})
	t.Logf("%d leases taken over %v after the kill (lease %v)", len(orphans), took.Round(10*time.Millisecond), testLease)
	if took > 2*testLease {
		t.Errorf("takeover took %v, want within 2 x %v", took, testLease)
	}
	_ = killed
	// The new owners resume from b's checkpoints.
	for _, k := range orphans {
		for _, o := range []string{"a", "c"} {
			v, ok, err := cs[o].Store().Get(k)
			if err != nil || !ok || string(v) != "from b "+k.Sub {
				t.Errorf("%s reads %s = %q %v %v, want b's checkpoint", o, k, v, ok, err)
			}
		}
	}
	if d := tr.doubles(); len(d) > 0 {
		t.Errorf("a stream ran twice at once: %v", d)
	}
}

func TestPausedOwnerIsFenced(t *testing.T) {
	srv := dynalite.Start(t)
	ks := keys(6)
	tr := newTracker()
	a := open(t, srv, "fence", "a")
	b := open(t, srv, "fence", "b")

	// a's streams record when their context ends.
	ended := map[state.Key]chan struct{}{}
	var mu sync.Mutex
	actx, acancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { acancel(); wg.Wait() })
	for _, k := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Run(actx, k, func(ctx context.Context) error {
				ch := make(chan struct{})
				mu.Lock()
				ended[k] = ch
				mu.Unlock()
				err := tr.fn("a", k)(ctx)
				close(ch)
				return err
			})
		}()
	}
	runAll(t, b, ks, tr)
	waitFor(t, 30*time.Second, "6 streams split across 2", func() bool {
		return balanced(tr, ks, "a", "b")() && len(a.Held()) >= 3
	})

	held := a.Held()
	sort.Slice(held, func(i, j int) bool { return held[i].Sub < held[j].Sub })
	k := held[0]
	if err := a.Store().Put(k, []byte("a-before-pause")); err != nil {
		t.Fatal(err)
	}

	// a stops renewing (as if SIGSTOPped); b takes everything over.
	a.setPaused(true)
	waitFor(t, 4*testLease, "b holds every lease", func() bool { return len(b.Held()) == len(ks) })
	if err := b.Store().Put(k, []byte("b-owner")); err != nil {
		t.Fatal(err)
	}

	// a's stale Put must not move the checkpoint, even though a still
	// believes it holds the lease.
	err := a.Store().Put(k, []byte("a-stale"))
	if !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("stale put: %v, want lease.ErrNotHeld", err)
	}
	big := make([]byte, 700<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if err := a.Store().Put(held[1], big); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("stale chunked put: %v, want lease.ErrNotHeld", err)
	}
	if v, _, _ := b.Store().Get(k); string(v) != "b-owner" {
		t.Fatalf("checkpoint is %q after a's stale put, want b's", v)
	}
	// The refused write stopped that stream at once.
	mu.Lock()
	ch := ended[k]
	mu.Unlock()
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("a's stream still runs after its checkpoint write was refused")
	}

	// a's other leases were not written to: they still run until a
	// resumes, notices it lost them and stops them within a renewal period.
	for _, k := range held[2:] {
		mu.Lock()
		ch := ended[k]
		mu.Unlock()
		select {
		case <-ch:
			t.Fatalf("a's stream %s ended while a was paused", k)
		default:
		}
	}
	resumed := time.Now()
	a.setPaused(false)
	for _, k := range held {
		mu.Lock()
		ch := ended[k]
		mu.Unlock()
		select {
		case <-ch:
		case <-time.After(testLease):
			t.Fatalf("a's stream %s still runs %v after resuming", k, time.Since(resumed))
		}
	}
	t.Logf("paused owner stopped all streams %v after resuming", time.Since(resumed).Round(10*time.Millisecond))
	if got := a.Held(); len(got) != 0 {
		t.Errorf("a still holds %v", got)
	}
	if a.Lost() != int64(len(held)) {
		t.Errorf("a lost %d leases, want %d", a.Lost(), len(held))
	}
}

func TestCloseHandsOverAtOnce(t *testing.T) {
	srv := dynalite.Start(t)
	ks := keys(3)
	tr := newTracker()
	a := open(t, srv, "close", "a")
	stopA := runAll(t, a, ks, tr)
	waitFor(t, 10*time.Second, "a runs all", func() bool { return len(a.Held()) == 3 })
	b := open(t, srv, "close", "b")
	runAll(t, b, ks, tr)
	stopA()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, testLease, "b runs all after a's close", func() bool { return len(b.Held()) == 3 })
	t.Logf("handed over %v after close (lease %v)", took.Round(10*time.Millisecond), testLease)
}

func TestBigCheckpointRoundTrip(t *testing.T) {
	srv := dynalite.Start(t)
	c := open(t, srv, "big", "a")
	k := keys(1)[0]
	tr := newTracker()
	runAll(t, c, []state.Key{k}, tr)
	waitFor(t, 10*time.Second, "lease held", func() bool { return len(c.Held()) == 1 })
	st := c.Store()

	for _, size := range []int{5 << 20, 1<<20 + 7, 100, inlineMax + 1, 0} {
		v := make([]byte, size)
		if _, err := rand.Read(v); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(k, v); err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		got, ok, err := st.Get(k)
		if err != nil || !ok || !bytes.Equal(got, v) {
			t.Fatalf("get after put of %d bytes: %d bytes, %v, %v", size, len(got), ok, err)
		}
		all, err := st.List(state.Key{Input: "in"})
		if err != nil || !bytes.Equal(all[k], v) {
			t.Fatalf("list after put of %d bytes: %d bytes, %v", size, len(all[k]), err)
		}
		// Only the current version's chunks remain.
		want := 0
		if size > inlineMax {
			want = (size + chunkSize - 1) / chunkSize
		}
		if n := countChunks(t, srv, "big"); n != want {
			t.Errorf("after put of %d bytes: %d chunk items, want %d", size, n, want)
		}
	}
	if err := st.Delete(k); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Get(k); ok || err != nil {
		t.Fatalf("get after delete: %v %v", ok, err)
	}
	// A key this collector does not hold cannot be written.
	other := state.Key{Input: "in", Service: "logs", Region: "us-east-1", Sub: "not-mine"}
	if err := st.Put(other, []byte("x")); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("put of an unheld key: %v, want lease.ErrNotHeld", err)
	}
	if _, ok, _ := st.Get(other); ok {
		t.Fatal("put of an unheld key wrote something")
	}
}

func countChunks(t *testing.T, srv *dynalite.Server, table string) int {
	t.Helper()
	db := dynamodb.NewFromConfig(srv.Config())
	n := 0
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{
		TableName: aws.String(table), ProjectionExpression: aws.String("pk"),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range out.Items {
			if getS(it, attrPK) != leasePK {
				n++
			}
		}
	}
	return n
}

// When DynamoDB cannot be reached for most of a lease duration, the
// collector stops its streams (others may be taking them over), and takes
// its leases back once the table answers again.
func TestTableOutageStopsStreams(t *testing.T) {
	srv := dynalite.Start(t)
	c := open(t, srv, "outage", "a")
	ks := keys(2)
	tr := newTracker()
	runAll(t, c, ks, tr)
	waitFor(t, 10*time.Second, "both streams run", func() bool { _, ok := tr.split(ks); return ok })

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	// A checkpoint write during the outage keeps trying until the lease is
	// given up, then reports it.
	putErr := make(chan error, 1)
	go func() { putErr <- c.Store().Put(ks[0], []byte("during the outage")) }()
	stopped := waitFor(t, 2*testLease, "streams stopped during the outage", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.running[ks[0]]) == 0 && len(tr.running[ks[1]]) == 0
	})
	t.Logf("streams stopped %v into the outage (lease %v)", stopped.Round(10*time.Millisecond), testLease)
	// Others count the lease expired a lease duration after they saw the
	// last renewal land; the streams must have stopped before that.
	// (They give it up 5/6 of the way; the margin is for a loaded machine.)
	if limit := testLease - 100*time.Millisecond; stopped > limit {
		t.Errorf("streams ran %v into the outage, want at most %v (lease %v)", stopped, limit, testLease)
	}
	select {
	case err := <-putErr:
		if !errors.Is(err, lease.ErrNotHeld) {
			t.Errorf("put during the outage: %v, want lease.ErrNotHeld", err)
		}
	case <-time.After(testLease):
		t.Error("put during the outage still waits after the lease was given up")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	back := waitFor(t, 3*testLease, "streams run again after the outage", func() bool { _, ok := tr.split(ks); return ok })
	t.Logf("streams back %v after the table answered again (outage %v)", back.Round(10*time.Millisecond), time.Since(paused).Round(10*time.Millisecond))
	if c.Lost() != 2 {
		t.Errorf("lost %d leases, want 2", c.Lost())
	}
}

// Delete is fenced for the streams this collector runs, and plain for keys
// it does not run (operator tooling such as state.Reset).
func TestDeleteAndList(t *testing.T) {
	srv := dynalite.Start(t)
	a := open(t, srv, "del", "a")
	b := open(t, srv, "del", "b")
	ks := keys(2)
	tr := newTracker()
	runAll(t, a, ks[:1], tr)
	waitFor(t, 10*time.Second, "a holds its stream", func() bool { return len(a.Held()) == 1 })
	if err := a.Store().Put(ks[0], []byte("v0")); err != nil {
		t.Fatal(err)
	}
	// b runs ks[1] but a holds ks[0]: b registers ks[0] too, without
	// holding it, and its delete of ks[0] is refused.
	runAll(t, b, ks, tr)
	waitFor(t, 10*time.Second, "b holds the other stream", func() bool { return len(b.Held()) == 1 })
	if err := b.Store().Delete(ks[0]); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("delete of a stream another collector holds: %v, want lease.ErrNotHeld", err)
	}
	if v, ok, _ := a.Store().Get(ks[0]); !ok || string(v) != "v0" {
		t.Fatalf("checkpoint after refused delete: %q %v", v, ok)
	}
	// A key nobody runs here: deleted without a lease, and a missing one
	// is not an error.
	if err := b.Store().Delete(state.Key{Input: "x", Service: "y", Region: "z", Sub: "none"}); err != nil {
		t.Fatal(err)
	}
	all, err := b.Store().List(state.Key{})
	if err != nil || len(all) != 1 || string(all[ks[0]]) != "v0" {
		t.Fatalf("list: %v %v", all, err)
	}
	if _, err := b.Store().List(state.Key{Input: "in", Region: "us-east-1"}); err == nil {
		t.Fatal("list with a field set after an empty one: no error")
	}
	n, err := state.Reset(a.Store(), state.Key{Input: "in"})
	if err != nil || n != 1 {
		t.Fatalf("reset: %d %v", n, err)
	}
	if _, ok, _ := a.Store().Get(ks[0]); ok {
		t.Fatal("checkpoint still there after reset")
	}
}

// A checkpoint write during a DynamoDB outage shorter than the lease waits
// for the table and succeeds.
func TestPutWaitsOutShortOutage(t *testing.T) {
	srv := dynalite.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, Config{Table: "short", Endpoint: srv.URL, LeaseDuration: 6 * time.Second, Owner: "a",
		AWS: srv.Config(), Log: testLog(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	k := keys(1)[0]
	runAll(t, c, []state.Key{k}, newTracker())
	waitFor(t, 10*time.Second, "lease held", func() bool { return len(c.Held()) == 1 })
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	putErr := make(chan error, 1)
	go func() { putErr <- c.Store().Put(k, []byte("saved after the outage")) }()
	time.Sleep(time.Second)
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-putErr:
		if err != nil {
			t.Fatalf("put across a 1 s outage: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("put never returned after the outage")
	}
	if v, ok, err := c.Store().Get(k); err != nil || !ok || string(v) != "saved after the outage" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if len(c.Held()) != 1 {
		t.Fatal("lease lost over a 1 s outage of a 6 s lease")
	}
}
