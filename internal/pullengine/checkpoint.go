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
//
// Saving the edge as hashes (edge_hashes) instead of IDs (edge) did not
// change it, on purpose. An older collector reading a newer checkpoint (a
// downgrade, or an older and a newer collector sharing streams during a
// rolling upgrade with coordination) ignores edge_hashes, a field it does not
// know, and resumes from the checkpoint's end with an empty edge: it sends
// again the events it re-reads there (the overlap), duplicates that stop
// after one window. Had the version changed, it would have read no
// checkpoint at all and restarted from start_time (days of duplicates) or,
// without one, from its default start age (a gap when the checkpoint is
// older). A newer collector reads both fields.
const checkpointVersion = 1

// Checkpoint is what the engine saves for a stream under its state.Key. It
// is self-contained JSON so that a shared store (DynamoDB, one item per
// key) can hold it as it is.
type Checkpoint struct {
	Version int
	// Origin is the configured start the walk began from (start_time as
	// written, "" when absent). A checkpoint saved under another origin is
	// discarded: changing start_time restarts the walk from the new value.
	Origin string
	// End is the end of the last window whose events were all delivered.
	End time.Time
	// Edge are the hashes of the IDs of the events seen in the last
	// EdgeSpan before End.
	Edge []IDHash
	// Saved is when this checkpoint was written, for operators.
	Saved time.Time
}

// checkpointJSON is the stored form of a Checkpoint.
type checkpointJSON struct {
	Version int       `json:"v"`
	Origin  string    `json:"origin"`
	End     time.Time `json:"end"`
	// EdgeIDs is the edge as written before it was hashed: the IDs
	// themselves. It is read (and hashed) so that an upgrade does not send
	// the events at the checkpoint's edge again, and never written.
	EdgeIDs []string `json:"edge,omitempty"`
	// EdgeHashes is the edge: the 16-byte IDHashes concatenated, which
	// encoding/json writes as one base64 string (about 21.4 bytes per ID,
	// against ~59 for a CloudWatch Logs eventId as a JSON string).
	EdgeHashes []byte    `json:"edge_hashes,omitempty"`
	Saved      time.Time `json:"saved"`
}

// MarshalJSON writes cp in its stored form; see checkpointJSON.
func (cp Checkpoint) MarshalJSON() ([]byte, error) {
	return json.Marshal(cp.stored())
}

// stored is cp in the form saved to the store.
func (cp Checkpoint) stored() checkpointJSON {
	return checkpointJSON{
		Version: cp.Version, Origin: cp.Origin, End: cp.End,
		EdgeHashes: joinHashes(cp.Edge), Saved: cp.Saved,
	}
}

// UnmarshalJSON reads cp from its stored form, the edge from either field
// (both, should both be present).
func (cp *Checkpoint) UnmarshalJSON(b []byte) error {
	var j checkpointJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	edge, err := splitHashes(j.EdgeHashes)
	if err != nil {
		return err
	}
	for _, id := range j.EdgeIDs {
		edge = append(edge, HashID(id))
	}
	*cp = Checkpoint{Version: j.Version, Origin: j.Origin, End: j.End, Edge: edge, Saved: j.Saved}
	return nil
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
	// The stored form directly: through MarshalJSON, encoding/json would
	// copy and check the few MB of a busy group's edge once more.
	b, err := json.Marshal(cp.stored())
	if err != nil {
		return err
	}
	return st.Put(k, b)
}
