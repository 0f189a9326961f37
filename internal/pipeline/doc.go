// Package pipeline is the centre of the collector: the Event, the Source and
// Sink contracts, the acknowledgement (Batch), the bounded Queue and the
// Runner that starts every unit and shuts them down in order.
//
// # The acknowledgement contract
//
// Every event has exactly one fate per output: Delivered or Failed. A Sink
// reports it with Queue.Settle once, and only after it knows: for a network
// output, after the bytes were written and the connection survived the settle
// window, or after the event was durably spooled. Console outputs report
// Delivered when the line is written.
//
// A source groups the events derived from one unit of upstream work (one SQS
// message, one API page or time slot) in a Batch. The Batch counts: each event
// emitted adds one pending fate per output, each Settle removes one. When the
// source has closed the batch and the count reaches zero, the batch's done
// callback runs exactly once with the numbers delivered and failed. Only a batch
// whose events were all Delivered may move anything forward (delete the SQS
// message, save the checkpoint); any Failed fate leaves the data where it can
// be read again.
//
// Acknowledgements are asynchronous: a source never waits for a batch to settle
// before reading the next unit of work; it bounds the number of batches in
// flight instead.
package pipeline
