// Package coord lets several collectors that share one configuration split
// the API streams between them, with leases and checkpoints in one DynamoDB
// table (globals.coordination). The model is the Kinesis Client Library's
// lease table:
//
//   - One item per lease (an API stream, named by its checkpoint key) with an
//     owner, a counter the owner increments at every renewal, an epoch every
//     take increments (the fencing token), and the stream's checkpoint.
//   - Expiry is judged by each observer's own clock: a lease whose counter has
//     not changed for the lease duration, as seen locally, is expired. No clock
//     is compared across hosts.
//   - Owners renew every third of the lease duration. Others take unowned and
//     expired leases, up to their fair share (ceil(leases / live owners)), and
//     ask the most loaded owner to hand one over per round when they hold
//     clearly fewer than it (the owner stops the stream, then releases).
//   - Every checkpoint write is conditional on (owner = this collector, epoch =
//     the epoch it took the lease with), so a collector that was paused past
//     its lease can never move a checkpoint its successor owns.
//
// A collector that cannot renew for most of a lease duration (DynamoDB
// unreachable, the process paused) treats its leases as lost and stops their
// streams, because the others will take them over.
package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// DefaultLeaseDuration is the lease duration when Config.LeaseDuration is 0.
const DefaultLeaseDuration = 20 * time.Second

// Config says where the lease table is and how this collector takes part.
type Config struct {
	// Table is the DynamoDB table name; Open creates it when missing.
	Table string
	// Region and Endpoint override AWS's region and base URL ("" keeps
	// AWS's, e.g. Endpoint is the emulator's URL in tests).
	Region, Endpoint string
	// LeaseDuration is how long a lease stays valid without a renewal, as
	// seen by the other collectors; 0 means DefaultLeaseDuration. A
	// collector that dies has its leases taken over within twice this.
	LeaseDuration time.Duration
	// Owner names this collector in the table; it must be unique per
	// process. "" means NewOwner().
	Owner string
	// AWS holds the credentials, HTTP client and retry settings.
	AWS aws.Config
	// Log receives the operator lines (leases taken, lost, handed over).
	// nil discards them.
	Log *slog.Logger
}

// NewOwner returns "hostname-pid-random", an owner name unique per process.
func NewOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "collector"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Coordinator holds this collector's leases in the table and runs the
// streams of the leases it holds. It implements lease.Holder; Store returns
// the checkpoint store fenced by its leases. Safe for concurrent use.
type Coordinator struct {
	db    *dynamodb.Client
	table string
	owner string
	dur   time.Duration
	log   *slog.Logger

	stop    context.CancelFunc
	loopCtx context.Context
	wg      sync.WaitGroup
	kick    chan struct{}

	mu     sync.Mutex
	held   map[string]*holding  // by item key
	runs   map[string]*run      // registered streams, by item key
	seen   map[string]*observed // last view of every lease item
	gone   map[string]time.Time // leases this collector handed over, and when
	paused bool                 // tests: renewals and balancing suspended
	closed bool

	lastErr   error            // the last failed table call since the last good read
	takeovers map[string]int64 // by kind: "unowned", "expired"
	lost      int64

	store *Store
}

// holding is a lease this collector holds.
type holding struct {
	key       state.Key
	epoch     int64
	counter   int64
	renewSent time.Time // when the last successful renewal (or the take) was sent
	lost      chan struct{}
	lostOnce  sync.Once
	handover  bool        // its owner asked for it: stop the stream, then release
	watchdog  *time.Timer // fires when renewSent is older than the validity
}

func (h *holding) cancel() {
	h.lostOnce.Do(func() {
		close(h.lost)
		if h.watchdog != nil {
			h.watchdog.Stop()
		}
	})
}

// run is a stream registered by Run.
type run struct {
	key  state.Key
	wake chan struct{} // signalled when the lease becomes held
}

// observed is what this collector last saw of a lease item, and when it
// last saw the item change.
type observed struct {
	key     state.Key
	owner   string
	counter int64
	claim   string
	changed time.Time
}

// Open connects to the table, creating it (on-demand billing) when missing
// and waiting until it is ACTIVE, and starts renewing and balancing leases.
// The caller must Close the Coordinator.
func Open(ctx context.Context, c Config) (*Coordinator, error) {
	if c.Table == "" {
		return nil, errors.New("coordination: no table name")
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.Owner == "" {
		c.Owner = NewOwner()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	co := &Coordinator{
		db:        newClient(c),
		table:     c.Table,
		owner:     c.Owner,
		dur:       c.LeaseDuration,
		log:       c.Log.With("owner", c.Owner, "table", c.Table),
		kick:      make(chan struct{}, 1),
		held:      map[string]*holding{},
		runs:      map[string]*run{},
		seen:      map[string]*observed{},
		gone:      map[string]time.Time{},
		takeovers: map[string]int64{},
	}
	co.store = &Store{c: co}
	if err := co.ensureTable(ctx); err != nil {
		return nil, err
	}
	co.loopCtx, co.stop = context.WithCancel(context.Background())
	co.wg.Add(2)
	go co.renewLoop()
	go co.balanceLoop()
	// app logs "coordination enabled" with the table, owner and lease duration.
	return co, nil
}

// Owner is this collector's name in the lease table.
func (c *Coordinator) Owner() string { return c.owner }

// LeaseDuration is the lease duration in use.
func (c *Coordinator) LeaseDuration() time.Duration { return c.dur }

// Store returns the checkpoint store kept in the lease table: a Put is
// written only while this collector holds the key's lease (see Store.Put).
func (c *Coordinator) Store() state.Store { return c.store }

// Held returns the keys of the leases this collector holds now.
func (c *Coordinator) Held() []state.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]state.Key, 0, len(c.held))
	for _, h := range c.held {
		out = append(out, h.key)
	}
	return out
}

// Takeovers returns how many leases this collector has taken, by how it got
// them: "unowned" (new, or released by a collector that stopped or handed
// it over) and "expired" (its owner stopped renewing).
func (c *Coordinator) Takeovers() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.takeovers))
	for k, v := range c.takeovers {
		out[k] = v
	}
	return out
}

// Health returns the last DynamoDB error of the lease loops (a renewal, a
// take, a read of the table) since the table was last read successfully,
// nil when all is well. While it is not nil this collector may be about to
// give up its leases; /healthz shows it.
func (c *Coordinator) Health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// noteErr records a failed table call for Health (nil: a good read).
func (c *Coordinator) noteErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// Lost returns how many leases this collector has lost (taken by another
// collector, or given up because renewals failed for too long).
func (c *Coordinator) Lost() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// Close stops renewing, ends the streams still running and releases every
// lease this collector holds, so that the others take them at their next
// round instead of waiting for expiry. It returns the first release error.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()

	c.mu.Lock()
	hs := make([]*holding, 0, len(c.held))
	for id, h := range c.held {
		hs = append(hs, h)
		h.cancel()
		delete(c.held, id)
	}
	c.mu.Unlock()
	var first error
	for _, h := range hs {
		ctx, cancel := context.WithTimeout(context.Background(), c.callTimeout())
		err := c.release(ctx, h)
		cancel()
		if err != nil && first == nil {
			first = err
		}
		if err == nil {
			c.log.Info("lease released", "key", h.key.String())
		}
	}
	return first
}

// halt stops renewing and balancing without releasing anything, as if the
// process had been killed (tests).
func (c *Coordinator) halt() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
}

// setPaused suspends (true) or resumes renewals and balancing, as SIGSTOP
// and SIGCONT would (tests). Streams keep running meanwhile.
func (c *Coordinator) setPaused(p bool) {
	c.mu.Lock()
	c.paused = p
	hs := make(map[string]*holding, len(c.held))
	for id, h := range c.held {
		hs[id] = h
	}
	c.mu.Unlock()
	if !p {
		// As on SIGCONT, the watchdogs that came due meanwhile fire now.
		for id, h := range hs {
			c.expire(id, h)
		}
	}
}

// callTimeout bounds one DynamoDB call (with the SDK's retries inside it),
// so that a hanging call cannot hold a loop past a renewal.
func (c *Coordinator) callTimeout() time.Duration { return c.dur / 3 }

// Run implements lease.Holder: it registers k (creating its lease item,
// unowned, when missing), then calls fn each time this collector comes to
// hold the lease, with a context that ends when the lease is lost, ctx ends
// or the Coordinator is closed. It returns nil once ctx ends, or fn's error
// when fn fails while the lease is still held (the lease stays held, so a
// restarted unit resumes at once). After Close it calls fn no more.
func (c *Coordinator) Run(ctx context.Context, k state.Key, fn func(ctx context.Context) error) error {
	id, err := itemKey(k)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("coordination: closed")
	}
	if _, dup := c.runs[id]; dup {
		c.mu.Unlock()
		return fmt.Errorf("coordination: stream %s is already running", k)
	}
	r := &run{key: k, wake: make(chan struct{}, 1)}
	c.runs[id] = r
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.runs, id)
		c.mu.Unlock()
	}()

	if err := c.createLease(ctx, id, k); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	c.kickBalance()

	for {
		c.mu.Lock()
		h := c.held[id]
		c.mu.Unlock()
		if h == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-c.loopCtx.Done():
				// Closed: this collector takes no lease any more.
				<-ctx.Done()
				return nil
			case <-r.wake:
				continue
			}
		}
		fctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			select {
			case <-h.lost:
				cancel()
			case <-stopped:
			}
		}()
		err := fn(fctx)
		close(stopped)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-h.lost:
			// The lease went away: wait to hold it again.
			c.finishHandover(id, h)
			continue
		default:
		}
		return err
	}
}

// kickBalance asks for a balancing round now (a new stream was registered).
func (c *Coordinator) kickBalance() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// errNotHeld wraps lease.ErrNotHeld with the key.
func errNotHeld(k state.Key) error {
	return fmt.Errorf("checkpoint %s: %w", k, lease.ErrNotHeld)
}

// isConditionFailed reports a conditional write that did not match.
func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}
