package pullengine

import (
	"crypto/sha256"
	"fmt"
)

// IDHash is the fixed-size form in which the engine remembers a record ID
// for edge de-duplication: in Pull's seen set, in the edge a window hands to
// the next, and in the saved checkpoint.
//
// A busy CloudWatch Logs group keeps hundreds of thousands of IDs (its
// eventIds are 56-digit strings, kept for the whole re-read overlap), so
// strings cost a separate allocation each in memory and ~59 bytes each in the
// checkpoint; 16 bytes held inline cost a third of that or less.
type IDHash [16]byte

// HashID returns the IDHash of id: the first 16 bytes of its SHA-256.
//
// The hash must be the same in every process and every version, because
// checkpoints saved by one collector are read by another (after a restart,
// an upgrade, or a lease moving between collectors): a per-process seeded
// hash (hash/maphash) would make a saved edge useless. 128 bits keep a
// collision, which would drop a real event as a "duplicate", out of the
// question: among a million IDs the chance of any two sharing a hash is about
// 10⁻²⁶. SHA-256 rather than FNV-128a because its output is uniform whatever
// the IDs look like (FNV mixes short inputs that differ only in their last
// bytes poorly, and 56-digit eventIds differ mostly there), it is computed
// without allocating, and it runs in hardware on current CPUs.
func HashID(id string) IDHash {
	// A conversion of a string longer than 32 bytes allocates even when
	// it does not escape; the IDs in use (UUIDs, 56-digit eventIds) fit
	// this buffer, which stays on the stack.
	var buf [128]byte
	b := buf[:0]
	if len(id) <= len(buf) {
		b = append(b, id...)
	} else {
		b = []byte(id)
	}
	sum := sha256.Sum256(b)
	return IDHash(sum[:16])
}

// joinHashes returns the hashes in hs, concatenated.
func joinHashes(hs []IDHash) []byte {
	b := make([]byte, 0, len(hs)*len(IDHash{}))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// splitHashes is the inverse of joinHashes.
func splitHashes(b []byte) ([]IDHash, error) {
	const n = len(IDHash{})
	if len(b)%n != 0 {
		return nil, fmt.Errorf("edge hashes: %d bytes, not a multiple of %d", len(b), n)
	}
	if len(b) == 0 {
		return nil, nil
	}
	out := make([]IDHash, len(b)/n)
	for i := range out {
		out[i] = IDHash(b[i*n : (i+1)*n])
	}
	return out, nil
}
