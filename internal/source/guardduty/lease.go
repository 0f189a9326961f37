package guardduty

import (
	"context"
	"sync"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// firstHoldWait bounds how long a cycle waits for the leases of detectors
// it has just discovered, so that a collector that holds them (always, when
// it runs alone) walks them in the same cycle. One that does not hold them
// is woken when it comes to.
const firstHoldWait = 500 * time.Millisecond

// holding is one holding of a detector's lease: ctx ends when the lease is
// lost, and led walks from the cursor loaded when it began.
type holding struct {
	ctx context.Context
	led *ledger
	// walked is set once a cycle has walked the detector under this
	// holding; guarded by the detector's mu.
	walked bool
	// walks counts the walks under this holding in progress; a walk is
	// added under the detector's mu while ctx is live, so once the holding
	// has seen ctx end and taken mu, Wait waits for the last one.
	walks sync.WaitGroup
}

// holding returns the detector's current holding, nil when this collector
// does not hold its lease.
func (d *detector) holding() *holding {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

// holders runs, for one Run, a lease holding per detector listed.
type holders struct {
	s      *Source
	ctx    context.Context // the Run's; ends the holdings
	period time.Duration
	wg     sync.WaitGroup

	mu sync.Mutex
	on map[string]bool // detectors whose lease is run
}

// start runs the lease of every detector of ids not yet run, and waits up
// to firstHoldWait for those this collector comes to hold.
func (h *holders) start(ids []string) {
	var added []*detector
	h.mu.Lock()
	for _, id := range ids {
		if h.on[id] {
			continue
		}
		h.on[id] = true
		d := h.s.dets[id]
		added = append(added, d)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			// hold never fails; Run does when it cannot register the
			// lease (the lease table unreachable): the next cycle tries
			// again.
			err := h.s.leases.Run(h.ctx, d.key, func(lctx context.Context) error { return h.hold(lctx, d) })
			if err != nil && h.ctx.Err() == nil {
				d.log.Warn("detector lease not registered, trying again next cycle", "err", err)
				h.mu.Lock()
				delete(h.on, d.id)
				h.mu.Unlock()
			}
		}()
	}
	h.mu.Unlock()
	if len(added) == 0 {
		return
	}
	// A wake taken here is for a detector this cycle walks anyway.
	deadline := time.NewTimer(firstHoldWait)
	defer deadline.Stop()
	for _, d := range added {
		for d.holding() == nil {
			select {
			case <-h.ctx.Done():
				return
			case <-deadline.C:
				return
			case <-h.s.wake:
			}
		}
	}
}

// hold is one holding of d's lease: it loads d's cursor, offers d to the
// cycle until lctx ends (the lease lost, or the Run ending), then waits for
// the walk to stop and, when only the lease was lost, a short while for the
// pages in flight to settle, so that their cursor is saved before the lease
// is given up.
func (h *holders) hold(lctx context.Context, d *detector) error {
	s := h.s
	var led *ledger
	for {
		var err error
		if led, err = s.ledger(d); err == nil {
			break
		}
		d.mu.Lock()
		said := d.cursorErr
		d.cursorErr = true
		d.mu.Unlock()
		if !said {
			d.log.Error("detector cursor not read, the detector is skipped", "err", err)
		}
		if !ctxtime.Sleep(lctx, h.period) {
			return nil
		}
	}
	hd := &holding{ctx: lctx, led: led}
	d.mu.Lock()
	d.cursorErr = false
	d.cur = hd
	d.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-lctx.Done()
	d.mu.Lock()
	d.cur = nil
	d.mu.Unlock()
	// The walk under this holding ends with lctx; wait for it.
	hd.walks.Wait()

	if h.ctx.Err() == nil {
		// The lease was lost: what settles later is the new owner's
		// business, and could only move the cursor back.
		led.wait(pullengine.DefaultGrace)
		d.mu.Lock()
		d.gen++
		d.mu.Unlock()
	}
	return nil
}

// walkHeld walks d under its holding hd: status, then findings.
func (s *Source) walkHeld(out pipeline.Emitter, c *stats.Cycle, d *detector, hd *holding, upper time.Time) error {
	d.mu.Lock()
	if err := hd.ctx.Err(); err != nil {
		d.mu.Unlock()
		return err
	}
	hd.walks.Add(1)
	hd.walked = true
	d.mu.Unlock()
	defer hd.walks.Done()
	s.checkStatus(hd.ctx, c, d)
	return s.walk(hd.ctx, out, c, d, hd.led, upper)
}

// idle waits d between cycles, ending early when a detector's lease was
// taken and the detector not yet walked under it. It reports whether ctx is
// still live.
func (s *Source) idle(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-s.wake:
			if s.unwalked() {
				return true
			}
		}
	}
}

// unwalked reports whether a listed detector is held and not yet walked
// under its holding.
func (s *Source) unwalked() bool {
	for _, d := range s.dets {
		if d.gone {
			continue
		}
		d.mu.Lock()
		w := d.cur != nil && !d.cur.walked
		d.mu.Unlock()
		if w {
			return true
		}
	}
	return false
}
