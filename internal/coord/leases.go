package coord

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
)

// validity is how long after the last successful renewal was sent this
// collector still counts a lease as its own. The others count it expired a
// full lease duration after they saw that renewal land, which is later; the
// margin leaves the stream time to stop before anyone takes over.
func (c *Coordinator) validity() time.Duration { return c.dur * 5 / 6 }

// renewLoop renews every held lease each third of the lease duration.
func (c *Coordinator) renewLoop() {
	defer c.wg.Done()
	ctxtime.Every(c.loopCtx, c.dur/3, c.renewAll)
}

func (c *Coordinator) renewAll() {
	c.mu.Lock()
	if c.paused {
		c.mu.Unlock()
		return
	}
	type one struct {
		id string
		h  *holding
	}
	var hs []one
	for id, h := range c.held {
		hs = append(hs, one{id, h})
	}
	c.mu.Unlock()

	var wg sync.WaitGroup
	for _, x := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.renewOne(x.id, x.h)
		}()
	}
	wg.Wait()
}

func (c *Coordinator) renewOne(id string, h *holding) {
	ctx, cancel := context.WithTimeout(c.loopCtx, c.callTimeout())
	defer cancel()
	sent := time.Now()
	item, err := c.renew(ctx, id, h.epoch)
	switch {
	case isConditionFailed(err):
		c.lose(id, h, "taken by another collector")
		return
	case err != nil:
		if c.loopCtx.Err() == nil {
			c.log.Warn("lease renewal failed", "key", h.key.String(), "err", err)
			c.noteErr(err)
		}
		return
	}
	c.mu.Lock()
	if c.held[id] != h {
		c.mu.Unlock()
		return // given up meanwhile (the watchdog fired)
	}
	h.renewSent = sent
	h.watchdog.Reset(c.validity() - time.Since(sent))
	h.counter = getN(item, attrCounter)
	claim := getS(item, attrClaim)
	startHandover := claim != "" && !h.handover
	if startHandover {
		h.handover = true
	}
	_, running := c.runs[id]
	c.mu.Unlock()
	if !startHandover {
		return
	}
	c.log.Info("lease handover requested", "key", h.key.String(), "to", claim)
	h.cancel()
	if !running {
		c.finishHandover(id, h)
	}
}

// finishHandover releases a lease whose handover was asked, once its
// stream has stopped. For a lease lost otherwise it does nothing.
func (c *Coordinator) finishHandover(id string, h *holding) {
	c.mu.Lock()
	if !h.handover || c.held[id] != h {
		c.mu.Unlock()
		return
	}
	delete(c.held, id)
	c.gone[id] = time.Now()
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.callTimeout())
	defer cancel()
	if err := c.release(ctx, h); err != nil {
		// It expires instead; the claimant takes it then.
		c.log.Warn("lease release failed", "key", h.key.String(), "err", err)
		return
	}
	c.log.Info("lease handed over", "key", h.key.String())
}

// watch arms h's watchdog: a collector that could not renew for most of a
// lease duration (DynamoDB unreachable, or this process paused) must
// assume the others are taking over, and stop the stream at once rather
// than at its next renewal round. Called with c.mu held.
func (c *Coordinator) watch(id string, h *holding) {
	h.watchdog = time.AfterFunc(c.validity()-time.Since(h.renewSent), func() { c.expire(id, h) })
}

// expire gives h up if its last renewal is older than the validity.
func (c *Coordinator) expire(id string, h *holding) {
	c.mu.Lock()
	due := !c.paused && c.held[id] == h && time.Since(h.renewSent) >= c.validity()
	c.mu.Unlock()
	if due {
		c.lose(id, h, "not renewed in time")
	}
}

// lose forgets a lease and ends its stream.
func (c *Coordinator) lose(id string, h *holding, reason string) {
	c.mu.Lock()
	mine := c.held[id] == h
	if mine {
		delete(c.held, id)
		c.lost++
	}
	c.mu.Unlock()
	h.cancel()
	if mine {
		c.log.Info("lease lost", "key", h.key.String(), "reason", reason)
	}
}

// balanceLoop reads the lease table each third of the lease duration (and
// when a stream registers) and takes or asks for leases.
func (c *Coordinator) balanceLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.dur / 3)
	defer t.Stop()
	for {
		select {
		case <-c.loopCtx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		c.balance()
	}
}

// candidate is a lease this collector may take.
type candidate struct {
	id      string
	owner   string
	counter int64
	kind    string
}

func (c *Coordinator) balance() {
	c.mu.Lock()
	paused := c.paused
	c.mu.Unlock()
	if paused {
		return
	}
	ctx, cancel := context.WithTimeout(c.loopCtx, c.callTimeout())
	items, err := c.scan(ctx)
	cancel()
	if err != nil {
		if c.loopCtx.Err() == nil {
			c.log.Warn("lease table read failed", "err", err)
			c.noteErr(err)
		}
		return
	}
	c.noteErr(nil)
	now := time.Now()

	c.mu.Lock()
	present := make(map[string]bool, len(items))
	for _, it := range items {
		id := getS(it, attrSK)
		present[id] = true
		owner, counter, claim := getS(it, attrOwner), getN(it, attrCounter), getS(it, attrClaim)
		o := c.seen[id]
		if o == nil || o.owner != owner || o.counter != counter || o.claim != claim {
			c.seen[id] = &observed{key: keyOf(it), owner: owner, counter: counter, claim: claim, changed: now}
		}
	}
	for id := range c.seen {
		if !present[id] {
			delete(c.seen, id)
		}
	}
	for id, at := range c.gone {
		if now.Sub(at) > c.dur {
			delete(c.gone, id)
		}
	}

	// Live owners hold an unexpired lease; this collector is one of them.
	counts := map[string]int{}
	total := 0
	var cands []candidate
	claimPending := false
	byOwner := map[string][]string{}
	for id, o := range c.seen {
		_, running := c.runs[id]
		_, holding := c.held[id]
		expired := o.owner != "" && now.Sub(o.changed) >= c.dur
		if o.owner != "" && !expired && o.owner != c.owner {
			counts[o.owner]++
			if running && o.claim == "" {
				byOwner[o.owner] = append(byOwner[o.owner], id)
			}
		}
		if o.claim == c.owner {
			claimPending = true
		}
		// Count the leases somebody runs: an item left by a stream no
		// collector has any more should not raise everyone's share.
		if (o.owner != "" && !expired) || running {
			total++
		}
		if !running || holding {
			continue
		}
		if _, recent := c.gone[id]; recent {
			continue // handed over: leave it to the one that asked
		}
		switch {
		case o.owner == "":
			cands = append(cands, candidate{id, "", o.counter, "unowned"})
		case o.owner == c.owner:
			// The table says it is ours but this collector gave it up
			// (renewals failed): take it again with a new epoch.
			cands = append(cands, candidate{id, o.owner, o.counter, "expired"})
		case expired:
			cands = append(cands, candidate{id, o.owner, o.counter, "expired"})
		}
	}
	mine := len(c.held)
	live := len(counts) + 1
	c.mu.Unlock()

	target := (total + live - 1) / live
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	took := 0
	for _, cd := range cands {
		if mine >= target {
			break
		}
		if c.takeOne(cd) {
			mine++
			took++
		}
	}
	if took > 0 || mine >= target || claimPending {
		return
	}
	// Below the fair share with nothing free: ask the most loaded owner
	// for one lease, only when it holds at least two more than this
	// collector, so that handing over cannot go back and forth.
	var victim string
	for o, n := range counts {
		if len(byOwner[o]) > 0 && (victim == "" || n > counts[victim]) {
			victim = o
		}
	}
	if victim == "" || counts[victim] < mine+2 {
		return
	}
	ids := byOwner[victim]
	id := ids[rand.IntN(len(ids))]
	ctx, cancel = context.WithTimeout(c.loopCtx, c.callTimeout())
	defer cancel()
	if err := c.claim(ctx, id, victim); err != nil {
		if !isConditionFailed(err) && c.loopCtx.Err() == nil {
			c.log.Warn("lease handover request failed", "err", err)
		}
		return
	}
	c.mu.Lock()
	k := c.seen[id].key
	c.mu.Unlock()
	c.log.Info("lease handover asked", "key", k.String(), "from", victim, "held", mine, "target", target)
}

// takeOne takes one candidate lease; it reports whether it now holds it.
func (c *Coordinator) takeOne(cd candidate) bool {
	ctx, cancel := context.WithTimeout(c.loopCtx, c.callTimeout())
	defer cancel()
	sent := time.Now()
	epoch, counter, err := c.take(ctx, cd.id, cd.owner, cd.counter)
	if err != nil {
		if !isConditionFailed(err) && c.loopCtx.Err() == nil {
			c.log.Warn("lease take failed", "err", err)
		}
		return false
	}
	c.mu.Lock()
	o := c.seen[cd.id]
	h := &holding{key: o.key, epoch: epoch, counter: counter, renewSent: sent, lost: make(chan struct{})}
	c.held[cd.id] = h
	c.watch(cd.id, h)
	kind := cd.kind
	c.takeovers[kind]++
	r := c.runs[cd.id]
	c.mu.Unlock()
	if r != nil {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	args := []any{"key", o.key.String(), "kind", kind, "epoch", epoch}
	if cd.owner != "" {
		args = append(args, "from", cd.owner)
	}
	c.log.Info("lease taken", args...)
	return true
}
