// Package spool keeps the events an output could not send, durably, until
// they can be sent: at shutdown a network output appends what it still holds
// and reports it Delivered; at the next start it replays the spool before
// taking new events.
//
// One spool serves one output and lives in its own directory
// (<persistence dir>/spool/<output name>/) as a single bbolt file, FileName.
// bbolt was chosen over a home-made log: it is already the project's state
// store, its commits are fsync'd copy-on-write transactions that a kill -9
// cannot tear, and it holds a file lock that keeps a second collector out.
//
// Each Append call is one transaction that stores its events as one or more
// records under increasing 8-byte big-endian sequence keys, so key order is
// append order. The record encoding is described in codec.go; every record
// ends with a CRC-32C.
package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// FileName is the spool database inside the spool directory.
const FileName = "spool.db"

// DefaultMaxBytes is the cap Open uses when given a non-positive one.
const DefaultMaxBytes int64 = 1 << 30

// ErrFull is returned by Append when the events would take the spool past
// its cap. Nothing of that call was written.
var ErrFull = errors.New("spool full")

// lockTimeout bounds how long Open waits for another process's file lock.
var lockTimeout = 2 * time.Second

// Record and chunk bounds. Appends are cut into records of at most
// recordMaxEvents events or recordMaxBytes bytes (a single larger event is
// a record of its own), so one Replay chunk never has to hold a whole
// spooled shutdown in memory. Replay joins consecutive records up to
// chunkMaxEvents events or chunkMaxBytes.
//
// Records are kept well below a chunk: a chunk takes whole records only, so
// with 1 MiB records (about 550 CloudTrail events) a 1,000-event chunk held
// one record, and a replay window of 32 chunks carried half the events it
// could (16,000 instead of about 28,000 events/s replayed in the backlog
// benchmark). Smaller records also keep bbolt's leaves small: a commit
// rewrites the leaf it touches, reading the records left in it through the
// file mapping (see dropResident).
const (
	recordMaxEvents = 1000
	recordMaxBytes  = 256 << 10
	chunkMaxEvents  = 1000
	chunkMaxBytes   = 4 << 20
)

var (
	eventsBucket  = []byte("events")
	corruptBucket = []byte("corrupt")
	metaBucket    = []byte("meta")
	versionKey    = []byte("version")
	formatVersion = []byte("1")
)

// Spool is the durable queue of one output's unsent events. Append and
// Replay may be called from different goroutines; Replay calls are
// serialised.
type Spool struct {
	db   *bolt.DB
	path string
	max  int64

	wmu    sync.Mutex // makes the cap check and the write one step
	replay sync.Mutex

	events atomic.Int64
	bytes  atomic.Int64
}

// Open opens (creating if needed) the spool in dir, capped at maxBytes of
// stored records (DefaultMaxBytes when maxBytes <= 0). dir is created with
// mode 0700: events are customer data. If another process holds the spool,
// Open fails after about two seconds with an error that says so. Every
// error names the file.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		// Spooled events are deleted as they are replayed; the map
		// freelist keeps frees cheap when the file holds many pages.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open spool %s: file is in use by another process (another collector with the same persistence directory and output name?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	s := &Spool{db: db, path: path, max: maxBytes}
	if err := db.Update(s.init); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise spool %s: %w", path, err)
	}
	return s, nil
}

// init creates the buckets, checks the format version and counts what is
// stored.
func (s *Spool) init(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(corruptBucket); err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	switch v := meta.Get(versionKey); {
	case v == nil:
		if err := meta.Put(versionKey, formatVersion); err != nil {
			return err
		}
	case !bytes.Equal(v, formatVersion):
		return fmt.Errorf("unsupported format version %q (this build reads %q)", v, formatVersion)
	}
	b, err := tx.CreateBucketIfNotExists(eventsBucket)
	if err != nil {
		return err
	}
	var events, size int64
	err = b.ForEach(func(k, v []byte) error {
		// A damaged header counts no events here; Replay reports it and
		// moves it aside.
		n, _ := recordCount(v)
		events += n
		size += int64(len(v))
		return nil
	})
	s.events.Store(events)
	s.bytes.Store(size)
	return err
}

// Path returns the database file name.
func (s *Spool) Path() string { return s.path }

// Len returns the number of events stored.
func (s *Spool) Len() int64 { return s.events.Load() }

// Bytes returns the size of the stored records (the quantity the cap
// bounds; the file itself may be larger, as bbolt reuses freed pages
// rather than shrinking).
func (s *Spool) Bytes() int64 { return s.bytes.Load() }

// Close closes the file. The spool must not be used afterwards.
func (s *Spool) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close spool %s: %w", s.path, err)
	}
	return nil
}

// Append stores evs (their tag, time and payload) after everything already
// in the spool, in one transaction that is fsync'd before Append returns.
// If the records would take the spool past its cap it returns ErrFull and
// writes nothing. The events are not settled: that is the caller's job once
// Append returned nil.
func (s *Spool) Append(evs []*pipeline.Event) error {
	if len(evs) == 0 {
		return nil
	}
	recs := encodeRecords(evs)
	var size int64
	for _, r := range recs {
		size += int64(len(r))
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.bytes.Load()+size > s.max {
		return fmt.Errorf("append %d events (%d bytes) to spool %s holding %d bytes, cap %d: %w",
			len(evs), size, s.path, s.bytes.Load(), s.max, ErrFull)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(eventsBucket)
		for _, r := range recs {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := b.Put(seqKey(seq), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d events to spool %s: %w", len(evs), s.path, err)
	}
	s.events.Add(int64(len(evs)))
	s.bytes.Add(size)
	// The commit read the leaf it rewrote through the file mapping.
	s.dropResident()
	return nil
}

// encodeRecords cuts evs into records within the record bounds.
func encodeRecords(evs []*pipeline.Event) [][]byte {
	var recs [][]byte
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) && n < recordMaxEvents {
			sz := encodedSize(evs[n])
			if n > 0 && size+sz > recordMaxBytes {
				break
			}
			size += sz
			n++
		}
		recs = append(recs, appendRecord(make([]byte, 0, size+16), evs[:n]))
		evs = evs[n:]
	}
	return recs
}

// Replay hands the stored events to fn, oldest first, in chunks, and
// removes a chunk only after fn returned nil for it. It stops at the first
// error of fn (returning it wrapped; that chunk and everything after it
// stay stored) or when ctx ends. It replays what was stored when it started:
// events appended meanwhile stay for the next Replay. The events carry tag,
// time (UTC) and payload and belong to no batch; fn must not keep the slice
// after returning, but may keep the events.
//
// A record that fails its checksum is moved aside (kept in the file for
// inspection, no longer counted) and Replay returns an error naming the file
// and the record; a later Replay continues after it.
func (s *Spool) Replay(ctx context.Context, fn func([]*pipeline.Event) error) error {
	return s.ReplayWindow(ctx, 1, 0, func(evs []*pipeline.Event) func() error {
		err := fn(evs)
		return func() error { return err }
	})
}

// ReplayWindow is Replay with several chunks in flight: send starts sending
// a chunk and returns a wait function that blocks until its fate is known
// (nil: delivered). A new chunk is read while fewer than window chunks, and
// less than maxBytes of stored bytes (0: no byte bound), are in flight;
// otherwise the oldest is waited for first. Chunks are removed strictly in order, each
// once its own wait and every earlier one returned nil; the first error
// stops the replay after the chunks already sent have been waited for (the
// delivered ones before it are removed), and everything from the failed
// chunk on stays stored. send may keep the slice and its events.
func (s *Spool) ReplayWindow(ctx context.Context, window int, maxBytes int64, send func([]*pipeline.Event) (wait func() error)) error {
	return s.replayChunks(ctx, window, maxBytes, false, nil, send)
}

// Follow is ReplayWindow that does not stop at what was stored when it
// started: it also sends what is appended while it runs, checking for more
// whenever more yields and whenever a chunk settles, and returns only when
// ctx ends (nil then) or on an error, after the chunks in flight have been
// waited for. A chunk settling is waited for only while nothing new can be
// sent, so appends never wait behind a slow settle.
func (s *Spool) Follow(ctx context.Context, window int, maxBytes int64, more <-chan struct{}, send func([]*pipeline.Event) (wait func() error)) error {
	err := s.replayChunks(ctx, window, maxBytes, true, more, send)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func (s *Spool) replayChunks(ctx context.Context, window int, maxBytes int64, follow bool, more <-chan struct{}, send func([]*pipeline.Event) (wait func() error)) error {
	s.replay.Lock()
	defer s.replay.Unlock()
	window = max(window, 1)
	sequence := func() (uint64, error) {
		var last uint64
		err := s.db.View(func(tx *bolt.Tx) error {
			last = tx.Bucket(eventsBucket).Sequence()
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("replay spool %s: %w", s.path, err)
		}
		return last, nil
	}
	last, err := sequence()
	if err != nil {
		return err
	}
	// A chunk in flight: its wait runs in a goroutine, so that a follow
	// can watch for appends while the oldest chunk settles.
	type sent struct {
		keys   [][]byte
		events int64
		size   int64
		done   chan struct{}
		err    error // set before done is closed
	}
	var (
		inflight []*sent
		bytes    int64
		failed   error
		next     uint64 // the first key not handed out yet
	)
	// settleOldest waits for the oldest chunk in flight and removes it if
	// it and everything before it were delivered.
	settleOldest := func() error {
		c := inflight[0]
		inflight = inflight[1:]
		bytes -= c.size
		<-c.done
		if c.err != nil {
			if failed == nil {
				failed = fmt.Errorf("replay spool %s: %w", s.path, c.err)
			}
			return nil
		}
		if failed != nil {
			return nil
		}
		return s.remove(c.keys, c.events, c.size, nil)
	}
	drain := func(err error) error {
		for len(inflight) > 0 {
			if rerr := settleOldest(); rerr != nil && err == nil {
				err = rerr
			}
		}
		if err == nil {
			err = failed
		}
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return drain(err)
		}
		for len(inflight) > 0 && (len(inflight) >= window || (maxBytes > 0 && bytes >= maxBytes) || failed != nil) {
			if err := settleOldest(); err != nil {
				return drain(err)
			}
		}
		if failed != nil {
			return drain(nil)
		}
		evs, keys, size, err := s.readChunk(nil, nil, next, last)
		if err != nil {
			return drain(err)
		}
		if len(keys) == 0 {
			if !follow {
				return drain(nil)
			}
			if now, err := sequence(); err != nil {
				return drain(err)
			} else if now != last {
				last = now
				continue
			}
			// Caught up: wait for an append, the oldest chunk's fate, or
			// the end.
			var oldest chan struct{}
			if len(inflight) > 0 {
				oldest = inflight[0].done
			}
			select {
			case <-ctx.Done():
			case <-more:
			case <-oldest:
				if err := settleOldest(); err != nil {
					return drain(err)
				}
			}
			continue
		}
		next = binary.BigEndian.Uint64(keys[len(keys)-1]) + 1
		c := &sent{keys: keys, events: int64(len(evs)), size: size, done: make(chan struct{})}
		wait := send(evs)
		go func() {
			c.err = wait()
			close(c.done)
		}()
		inflight = append(inflight, c)
		bytes += size
	}
}

// readChunk decodes the oldest records with keys from first up to last,
// within the chunk bounds (at least one record). size is the records' stored
// bytes.
func (s *Spool) readChunk(evs []*pipeline.Event, keys [][]byte, first, last uint64) (_ []*pipeline.Event, _ [][]byte, size int64, err error) {
	var badKey []byte
	var badErr error
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(eventsBucket).Cursor()
		for k, v := c.Seek(seqKey(first)); k != nil && binary.BigEndian.Uint64(k) <= last; k, v = c.Next() {
			if len(keys) > 0 && (len(evs) >= chunkMaxEvents || size+int64(len(v)) > chunkMaxBytes) {
				return nil
			}
			n, cerr := recordCount(v)
			if cerr == nil && len(keys) > 0 && len(evs)+int(n) > chunkMaxEvents {
				return nil
			}
			before := len(evs)
			evs, cerr = decodeRecord(evs, v)
			if cerr != nil {
				if len(keys) > 0 {
					// Hand over the good records first.
					clear(evs[before:])
					evs = evs[:before]
					return nil
				}
				badKey, badErr = bytes.Clone(k), cerr
				return nil
			}
			dropPages(tx, v) // decoded into memory of its own
			keys = append(keys, bytes.Clone(k))
			size += int64(len(v))
		}
		return nil
	})
	if err != nil {
		return evs, keys, size, fmt.Errorf("read spool %s: %w", s.path, err)
	}
	// The records are decoded into memory of their own: the pages they were
	// read from (and those the last removal rewrote) need not stay resident.
	s.dropResident()
	if badKey != nil {
		if err := s.remove([][]byte{badKey}, 0, 0, corruptBucket); err != nil {
			return evs, keys, size, err
		}
		return evs, keys, size, fmt.Errorf("read spool %s: record %d: %w (moved to bucket %q)",
			s.path, binary.BigEndian.Uint64(badKey), badErr, corruptBucket)
	}
	return evs, keys, size, nil
}

// remove deletes keys in one transaction, first copying their values to
// the bucket named aside when it is set, and updates the counters.
func (s *Spool) remove(keys [][]byte, events, size int64, aside []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var freed int64
	var lost int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(eventsBucket)
		for _, k := range keys {
			if aside != nil {
				v := b.Get(k)
				freed += int64(len(v))
				n, _ := recordCount(v)
				lost += n
				if err := tx.Bucket(aside).Put(k, bytes.Clone(v)); err != nil {
					return err
				}
			}
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove replayed events from spool %s: %w", s.path, err)
	}
	// Deleting rewrote leaves, reading the records left in them; at the
	// end of a replay a whole window of removals follows the last read.
	s.dropResident()
	if aside != nil {
		events, size = lost, freed
	}
	s.events.Add(-events)
	s.bytes.Add(-size)
	return nil
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}
