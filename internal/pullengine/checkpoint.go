package pullengine

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// checkpointVersion is the layout of a saved checkpoint. A store holding
// another version is read as no checkpoint (the stream starts from its
// origin again) rather than misread.
const checkpointVersion = 1

// Checkpoint is what the engine saves for a stream under its state.Key. It
// is self-contained JSON so that a shared store (DynamoDB, one item per
// key) can hold it as it is.
type Checkpoint struct {
	Version int `json:"v"`
	// Origin is the configured start the walk began from (start_time as
	// written, "" when absent). A checkpoint saved under another origin is
	// discarded: changing start_time restarts the walk from the new value.
	Origin string `json:"origin"`
	// End is the end of the last window whose events were all delivered.
	End time.Time `json:"end"`
	// Edge are the IDs of the events seen in the last EdgeSpan before End.
	Edge []string `json:"edge,omitempty"`
	// Saved is when this checkpoint was written, for operators.
	Saved time.Time `json:"saved"`
}

// LoadCheckpoint reads the checkpoint saved under k; ok is false when there
// is none (or one of another layout version).
func LoadCheckpoint(st state.Store, k state.Key) (cp Checkpoint, ok bool, err error) {
	b, found, err := st.Get(k)
	if err != nil || !found {
		return Checkpoint{}, false, err
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint %s: %w", k, err)
	}
	if cp.Version != checkpointVersion {
		return Checkpoint{}, false, nil
	}
	return cp, true, nil
}

func saveCheckpoint(st state.Store, k state.Key, cp Checkpoint) error {
	cp.Version = checkpointVersion
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return st.Put(k, b)
}
