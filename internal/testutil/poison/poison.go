// Package poison helps tests hold outputs to the pipeline's rule that an
// event is never read after its fate was reported.
package poison

import "github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"

// AfterFate makes ev's payload turn into '#' bytes as soon as every output
// has reported its fate, as a source that reuses payload memory would. Call
// it before emitting ev; an output that reads the payload after settling
// the event then shows '#'s instead of the data.
func AfterFate(ev *pipeline.Event) {
	payload := ev.Payload
	ref := new(pipeline.Ref)
	ref.Init(func() {
		for i := range payload {
			payload[i] = '#'
		}
	})
	ev.Share(ref)
	ref.Release()
}
