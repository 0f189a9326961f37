package pullengine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// legacyCheckpoint is the checkpoint as collectors before edge hashing
// wrote and read it: the edge as the IDs themselves.
type legacyCheckpoint struct {
	Version int       `json:"v"`
	Origin  string    `json:"origin"`
	End     time.Time `json:"end"`
	Edge    []string  `json:"edge,omitempty"`
	Saved   time.Time `json:"saved"`
}

// HashID is fixed: checkpoints saved by one version are read by the next.
func TestHashIDIsStable(t *testing.T) {
	got := HashID("37234548283489827346982374629837462983746298374629837462")
	// The first 16 bytes of
	// printf %s 37234548283489827346982374629837462983746298374629837462 | sha256sum
	want := IDHash{0x0c, 0xee, 0xcc, 0x93, 0xdb, 0xc6, 0xee, 0x0e, 0x16, 0xc3, 0xf5, 0x63, 0x0d, 0x42, 0xd3, 0x6f}
	if got != want {
		t.Fatalf("HashID = %x, want %x", got, want)
	}
	if HashID("a") == HashID("b") {
		t.Fatal("two IDs hash alike")
	}
	long := string(bytes.Repeat([]byte("x"), 300)) // past HashID's stack buffer
	if HashID(long) != HashID(string(bytes.Repeat([]byte("x"), 300))) || HashID(long) == HashID(long[:299]) {
		t.Fatal("long IDs hash wrongly")
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	store := state.NewMemory()
	key := state.Key{Input: "aws", Service: "cwl_1", Region: "r", Sub: "/app"}
	end := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cp := Checkpoint{Origin: "o", End: end, Edge: []IDHash{HashID("a"), HashID("b"), HashID("c")}, Saved: end.Add(time.Second)}
	if err := saveCheckpoint(store, key, cp); err != nil {
		t.Fatal(err)
	}
	raw, _, _ := store.Get(key)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields["edge"]; ok {
		t.Errorf("the ID list is still written: %s", raw)
	}
	var enc string
	if err := json.Unmarshal(fields["edge_hashes"], &enc); err != nil || len(enc) != 64 { // 48 bytes in base64
		t.Errorf("edge_hashes = %s (%v), want one base64 string of 64 characters", fields["edge_hashes"], err)
	}
	got, ok, err := LoadCheckpoint(store, key)
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	cp.Version = checkpointVersion
	if !got.End.Equal(cp.End) || !got.Saved.Equal(cp.Saved) || got.Origin != cp.Origin || !slices.Equal(got.Edge, cp.Edge) {
		t.Fatalf("loaded %+v, saved %+v", got, cp)
	}

	// No edge: no field.
	if err := saveCheckpoint(store, key, Checkpoint{End: end}); err != nil {
		t.Fatal(err)
	}
	raw, _, _ = store.Get(key)
	if bytes.Contains(raw, []byte("edge")) {
		t.Errorf("an empty edge is written: %s", raw)
	}
	if got, _, _ := LoadCheckpoint(store, key); got.Edge != nil {
		t.Errorf("empty edge loaded as %v", got.Edge)
	}

	// A damaged edge is an error, not a silently shorter edge.
	if err := store.Put(key, []byte(`{"v":1,"end":"2026-03-01T12:00:00Z","edge_hashes":"AAEC"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadCheckpoint(store, key); err == nil {
		t.Errorf("an edge of 3 bytes loaded without error")
	}
}

// A checkpoint written before edge hashing (the IDs as strings) is read
// with its edge hashed.
func TestLegacyCheckpointEdgeIsHashedOnLoad(t *testing.T) {
	store := state.NewMemory()
	key := state.Key{Input: "aws", Service: "cwl_1", Region: "r", Sub: "/app"}
	end := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old, _ := json.Marshal(legacyCheckpoint{Version: 1, Origin: "o", End: end, Edge: []string{"id-1", "id-2"}, Saved: end})
	if err := store.Put(key, old); err != nil {
		t.Fatal(err)
	}
	cp, ok, err := LoadCheckpoint(store, key)
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if want := []IDHash{HashID("id-1"), HashID("id-2")}; !slices.Equal(cp.Edge, want) || !cp.End.Equal(end) || cp.Origin != "o" {
		t.Fatalf("loaded %+v", cp)
	}
}

// A collector from before edge hashing reading a new checkpoint (a
// downgrade, or a rolling upgrade with coordination) still takes it as a
// checkpoint, with the same end and an empty edge: it re-sends at most its
// overlap, never restarts from its origin. This is why checkpointVersion
// did not change.
func TestOlderCollectorReadsNewCheckpoint(t *testing.T) {
	end := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b, err := json.Marshal(Checkpoint{Version: checkpointVersion, Origin: "o", End: end, Edge: []IDHash{HashID("a")}, Saved: end})
	if err != nil {
		t.Fatal(err)
	}
	var old legacyCheckpoint
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatalf("the old layout cannot read the new one: %v", err)
	}
	if old.Version != 1 || !old.End.Equal(end) || old.Origin != "o" || len(old.Edge) != 0 {
		t.Fatalf("an older collector reads %+v", old)
	}
}

// Upgrading from a checkpoint with the edge as IDs: the event exactly on
// the checkpoint, delivered before the upgrade, is not sent again, and the
// next checkpoint is written with hashes.
func TestUpgradeFromLegacyCheckpointDeduplicates(t *testing.T) {
	origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st := &hourStream{origin: origin, hours: 42}
	store := state.NewMemory()
	key := state.Key{Input: "aws", Service: "svc", Region: "r", Sub: "s"}
	cpEnd := origin.Add(40 * time.Hour)
	old, _ := json.Marshal(legacyCheckpoint{Version: 1, Origin: "o", End: cpEnd, Edge: []string{"h39-3", "edge-40"}, Saved: cpEnd})
	if err := store.Put(key, old); err != nil {
		t.Fatal(err)
	}
	eng, err := New(Config{
		Key: key, Store: store, Stream: st, Origin: "o",
		Start:  func(time.Time) time.Time { return origin },
		Now:    func() time.Time { return origin.Add(43 * time.Hour) },
		Period: time.Hour, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	delivered, err := runUntil(t, eng, store, key, origin.Add(42*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := delivered.Load("edge-40"); ok {
		t.Errorf("edge-40, in the old checkpoint's edge, was sent again after the upgrade")
	}
	for _, id := range []string{"h40-1", "h40-3", "edge-41", "h41-1", "edge-42"} {
		if _, ok := delivered.Load(id); !ok {
			t.Errorf("%s not delivered", id)
		}
	}
	raw, _, _ := store.Get(key)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields["edge"]; ok {
		t.Errorf("the checkpoint saved after the upgrade still lists IDs: %s", raw)
	}
	if cp, _, _ := LoadCheckpoint(store, key); !slices.Equal(cp.Edge, []IDHash{HashID("edge-42")}) {
		t.Errorf("edge saved after the upgrade = %x, want the hash of edge-42", cp.Edge)
	}
}

// cwlogsID returns a fresh CloudWatch Logs-style eventId: 56 decimal digits,
// allocated on its own as the SDK's decoder does.
func cwlogsID(rng *rand.Rand, i int) string {
	return fmt.Sprintf("%028d%028d", rng.Uint64N(1e18), i)
}

// heapAfterGC is the live heap, in bytes. Two collections: what sits in a
// sync.Pool (encoding/json's buffers) survives the first.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The edge of a busy CloudWatch Logs group: 1,000 events/s over the 5-minute
// overlap, 300,000 eventIds at a window's edge. Measures the checkpoint
// holding them and the memory a pending window keeps for them, against the
// same IDs kept as strings (the layout before edge hashing). Sizes are
// deterministic; the heap figures are measured, with wide margins.
func TestEdgeSizeBusyLogGroup(t *testing.T) {
	const n = 300_000
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	e, err := New(Config{Store: state.NewMemory(), Stream: &hourStream{}, Start: func(time.Time) time.Time { return t0 }, EdgeSpan: 5*time.Minute + time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := Window{Start: t0, End: t0.Add(time.Minute)}

	// Now: hashes.
	rng := rand.New(rand.NewPCG(1, 2))
	base := heapAfterGC()
	p := &Pull{Window: w, Cycle: stats.NewCycle(slog.New(slog.DiscardHandler), nil, t0), run: &run{e: e}, seen: map[IDHash]bool{}}
	for i := range n {
		if p.Seen(cwlogsID(rng, i), w.End.Add(-time.Duration(i)*time.Millisecond)) {
			t.Fatalf("id %d taken as a duplicate", i)
		}
	}
	duringPull := heapAfterGC() - base
	edge := p.keptEdge()
	p = nil
	kept := heapAfterGC() - base
	if len(edge) != n {
		t.Fatalf("edge holds %d IDs, want %d", len(edge), n)
	}
	newCP, err := json.Marshal(Checkpoint{Version: checkpointVersion, Origin: "2026-01-01T00:00:00Z", End: w.End, Edge: edge, Saved: w.End})
	if err != nil {
		t.Fatal(err)
	}
	edge = nil

	// Before: the same IDs as strings, in a map and a slice as Pull kept them.
	rng = rand.New(rand.NewPCG(1, 2))
	base = heapAfterGC()
	seen := map[string]bool{}
	var ids []string
	for i := range n {
		id := cwlogsID(rng, i)
		seen[id] = false
		ids = append(ids, id)
	}
	oldDuringPull := heapAfterGC() - base
	runtime.KeepAlive(seen)
	seen = nil
	oldKept := heapAfterGC() - base
	oldCP, err := json.Marshal(legacyCheckpoint{Version: 1, Origin: "2026-01-01T00:00:00Z", End: w.End, Edge: ids, Saved: w.End})
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(ids)

	t.Logf("%d eventIds of %d digits at the edge: checkpoint %d bytes (was %d, %.2f× smaller); kept per pending window %.1f MB (was %.1f MB); during the pull %.1f MB (was %.1f MB)",
		n, len(ids[0]), len(newCP), len(oldCP), float64(len(oldCP))/float64(len(newCP)),
		float64(kept)/1e6, float64(oldKept)/1e6, float64(duringPull)/1e6, float64(oldDuringPull)/1e6)

	// 16 bytes per ID in base64 (4/3) plus the other fields.
	if max := n*16*4/3 + 200; len(newCP) > max {
		t.Errorf("checkpoint of %d bytes, want at most %d", len(newCP), max)
	}
	if len(newCP)*5 > len(oldCP)*2 {
		t.Errorf("checkpoint %d bytes, not 2.5× smaller than %d", len(newCP), len(oldCP))
	}
	// 16 bytes per ID (and a little slack); strings cost ~80.
	if max := n * 16 * 9 / 8; kept > uint64(max) || kept*3 > oldKept {
		t.Errorf("a pending window keeps %d bytes for its edge (strings: %d), want at most %d and a third of the strings'", kept, oldKept, max)
	}
	if duringPull*2 > oldDuringPull {
		t.Errorf("a pull holds %d bytes for its seen set and edge (strings: %d), want at most half", duringPull, oldDuringPull)
	}
}
