package guardduty

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// cursorVersion is the layout of a saved cursor; another version is read as
// no cursor (the detector starts from its origin again, which duplicates
// rather than loses).
const cursorVersion = 1

// Cursor is where a detector's walk stands: every finding whose updatedAt
// is before UpdatedAt, and every (ID, UpdatedAt) pair in IDs, was
// delivered. The next query asks for updatedAt ≥ UpdatedAt and skips the
// IDs, so findings that share the cursor's millisecond are neither lost nor
// sent twice, and a finding updated later (a newer updatedAt) is sent again.
type Cursor struct {
	Version int `json:"v"`
	// Origin is start_time as written ("" when absent); a cursor saved
	// under another origin is discarded, so changing start_time restarts
	// the walk from the new value.
	Origin string `json:"origin"`
	// UpdatedAt is the newest delivered updatedAt, epoch milliseconds.
	UpdatedAt int64 `json:"updated_at_ms"`
	// IDs are the delivered findings whose updatedAt is exactly UpdatedAt.
	IDs []string `json:"ids,omitempty"`
	// Saved is when the cursor was written, for operators.
	Saved time.Time `json:"saved"`
}

// has reports whether the finding id at ms was already delivered by the
// position c stands on.
func (c *Cursor) has(id string, ms int64) bool {
	return ms < c.UpdatedAt || (ms == c.UpdatedAt && slices.Contains(c.IDs, id))
}

// advance moves c over the finding id at ms (ms ≥ c.UpdatedAt).
func (c *Cursor) advance(id string, ms int64) {
	switch {
	case ms > c.UpdatedAt:
		c.UpdatedAt, c.IDs = ms, []string{id}
	case ms == c.UpdatedAt && !slices.Contains(c.IDs, id):
		c.IDs = append(c.IDs, id)
	}
}

func (c Cursor) clone() Cursor {
	c.IDs = slices.Clone(c.IDs)
	return c
}

// LoadCursor reads the cursor saved under k; ok is false when there is none
// (or one of another layout version).
func LoadCursor(st state.Store, k state.Key) (c Cursor, ok bool, err error) {
	b, found, err := st.Get(k)
	if err != nil || !found {
		return Cursor{}, false, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Cursor{}, false, fmt.Errorf("cursor %s: %w", k, err)
	}
	if c.Version != cursorVersion {
		return Cursor{}, false, nil
	}
	return c, true, nil
}

func saveCursor(st state.Store, k state.Key, c Cursor) error {
	c.Version = cursorVersion
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return st.Put(k, b)
}

// Page states in a ledger.
const (
	pageInFlight = iota
	pageDone
	pageFailed
)

// page is one ListFindings page's batch: mark is the walk's position once
// the page's findings are delivered.
type page struct {
	mark  Cursor
	state int
}

// ledger is a detector's ordered finalizer. Pages are added in walk order;
// the saved cursor moves to a page's mark only when that page and every page
// before it were delivered, whatever order their batches settle in. A page
// that fails holds the cursor where it is: once every page has settled, the
// walk restarts from the saved cursor (reset), so what was not delivered is
// read again.
//
// The pull engine's finalizer does the same for windows fixed before they
// are pulled; a GuardDuty page ends where the data ends, so the source
// keeps its own.
type ledger struct {
	mu      sync.Mutex
	saved   Cursor
	pages   []*page
	changed chan struct{}
	// save persists a new mark; it runs under mu, so marks are saved in
	// order.
	save func(Cursor)
}

func newLedger(saved Cursor, save func(Cursor)) *ledger {
	return &ledger{saved: saved, save: save, changed: make(chan struct{}, 1)}
}

// add registers the next page of the walk.
func (l *ledger) add(mark Cursor) *page {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := &page{mark: mark.clone()}
	l.pages = append(l.pages, p)
	return p
}

// settle records p's fate and moves the saved cursor over the delivered
// prefix.
func (l *ledger) settle(p *page, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		p.state = pageDone
	} else {
		p.state = pageFailed
	}
	n := 0
	for n < len(l.pages) && l.pages[n].state == pageDone {
		n++
	}
	if n > 0 {
		l.saved = l.pages[n-1].mark
		clear(l.pages[:n])
		l.pages = l.pages[n:]
		if l.save != nil {
			l.save(l.saved.clone())
		}
	}
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// settled reports whether no page is in flight.
func (l *ledger) settled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.pages {
		if p.state == pageInFlight {
			return false
		}
	}
	return true
}

// reset waits until every page has settled, drops those the cursor could
// not pass (a failed page and the ones behind it) and returns the saved
// cursor, where the next walk starts; failed reports whether a page failed.
func (l *ledger) reset(ctx context.Context) (c Cursor, failed bool, err error) {
	for !l.settled() {
		select {
		case <-ctx.Done():
			return Cursor{}, false, ctx.Err()
		case <-l.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	failed = len(l.pages) > 0
	l.pages = nil
	return l.saved.clone(), failed, nil
}

// wait waits up to d until no page is in flight.
func (l *ledger) wait(d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !l.settled() {
		select {
		case <-deadline.C:
			return
		case <-l.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}
