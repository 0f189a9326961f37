// Package lease is the seam between the API sources and the coordination of
// several collectors that share one configuration (globals.coordination).
//
// Every checkpointed stream of an API source (a region's CloudTrail, a
// GuardDuty detector, a log group, a metrics unit) is a lease named by its
// checkpoint key. A source runs a stream only while its Holder says this
// collector holds the stream's lease; a collector that runs alone holds
// every lease (Solo). The checkpoint store that goes with a shared Holder
// refuses a write for a lease this collector no longer holds, so a paused
// former owner can never move a checkpoint.
package lease

import (
	"context"
	"errors"

	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// Holder runs streams while this collector holds their leases.
type Holder interface {
	// Run calls fn each time this collector comes to hold the lease named
	// k, with a context that ends when the lease is lost or ctx ends, and
	// waits between holdings. It returns nil once ctx ends, or fn's error
	// when fn fails while the lease is still held (the stream's unit then
	// fails as it would in a collector alone). Run registers k as a stream
	// that exists, so that the group can share it out.
	//
	// When fn's context ends while this collector still owns the lease
	// (it is handing the lease over, or stopping), fn saves the
	// checkpoint of what it delivered before returning; the store must
	// take those writes until fn returns, or the next owner reads that
	// part of the stream again.
	Run(ctx context.Context, k state.Key, fn func(ctx context.Context) error) error
}

// Solo is the Holder of a collector without coordination: it holds every
// lease, always, so Run is fn(ctx).
type Solo struct{}

// Run calls fn(ctx) once.
func (Solo) Run(ctx context.Context, _ state.Key, fn func(ctx context.Context) error) error {
	return fn(ctx)
}

// ErrNotHeld is returned (wrapped) by a shared checkpoint store for a write
// under a lease this collector does not hold (any more). The write did not
// happen; the lease's new owner carries on from the last checkpoint.
var ErrNotHeld = errors.New("lease not held by this collector")
