package sqsengine

import (
	"sync"
	"time"
)

// groupOrder makes the fates of a FIFO queue's messages take effect in
// receive order within each message group.
//
// Real SQS can hand out several messages of one group in one receive. They
// are handled in order, but their batches settle whenever their events do.
// If an earlier message A failed while a later message B of its group was
// delivered, deleting B and returning A would put A's events after B's. So a
// settled message waits here until every earlier in-flight message of its
// group has had its fate decided; and once one of them stays in the queue
// (returned, or left for the dead-letter queue), every later message of the
// group in flight goes back too, even if it was delivered: SQS then hands
// the group out again in order. A duplicate is acceptable, reordering is not.
//
// A poison message deleted at max_receive_count does not stay in the queue,
// nor does one left for a dead-letter queue that SQS moves at its next
// receive, so the messages after it carry on: a failing message never
// blocks its group for longer than its receive limit.
type groupOrder struct {
	mu     sync.Mutex
	groups map[string]*groupState
}

type groupState struct {
	// waiting are the group's messages in flight, in receive order; a
	// message's settled is nil until its batch settles.
	waiting []*inFlight
	// stays is set once a message of the group was returned to the queue
	// (or left for its dead-letter queue) while later ones were in flight;
	// backVis is how long that message is hidden, and so how long the
	// messages after it are hidden when they go back. It lasts until the
	// group has nothing in flight.
	stays   bool
	backVis time.Duration
}

type inFlight struct {
	handle  string
	settled *settled
}

func newGroupOrder() *groupOrder {
	return &groupOrder{groups: map[string]*groupState{}}
}

// add records a received message of a FIFO group. It is called in receive
// order, before the message is handed to a worker.
func (o *groupOrder) add(m Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.groups[m.GroupID]
	if g == nil {
		g = &groupState{}
		o.groups[m.GroupID] = g
	}
	g.waiting = append(g.waiting, &inFlight{handle: m.ReceiptHandle})
}

// decideFunc carries out the fate of one settled message. behind is nil, or
// how long an earlier message of its group that stays in the queue is
// hidden. It reports whether the message stays in the queue to be received
// again, and if so how long it is hidden.
type decideFunc func(s settled, behind *time.Duration) (stays bool, vis time.Duration)

// settle records that s's batch settled, then calls decide for every
// message of s's group whose turn has come, in receive order.
func (o *groupOrder) settle(s settled, decide decideFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.groups[s.m.GroupID]
	var slot *inFlight
	if g != nil {
		for _, f := range g.waiting {
			if f.handle == s.m.ReceiptHandle && f.settled == nil {
				slot = f
				break
			}
		}
	}
	if slot == nil {
		// Never added (cannot happen: every message is added before it is
		// handled). Carrying out its own fate is the best left to do.
		decide(s, nil)
		return
	}
	slot.settled = &s
	for len(g.waiting) > 0 && g.waiting[0].settled != nil {
		head := *g.waiting[0].settled
		g.waiting[0] = nil
		g.waiting = g.waiting[1:]
		var behind *time.Duration
		if g.stays {
			behind = &g.backVis
		}
		if stays, vis := decide(head, behind); stays && !g.stays {
			g.stays, g.backVis = true, vis
		}
	}
	if len(g.waiting) == 0 {
		delete(o.groups, s.m.GroupID)
	}
}

// held is the number of settled messages waiting for an earlier message of
// their group.
func (o *groupOrder) held() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, g := range o.groups {
		for _, f := range g.waiting {
			if f.settled != nil {
				n++
			}
		}
	}
	return n
}
