package spool

import (
	"os"
	"syscall"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// dropResident lets the kernel unmap, from this process, the pages of the
// spool file it has touched. bbolt reads the file through a read-only
// shared mapping, and every page read stays resident in the process until
// unmapped: a replay reads each record once, and an append rewrites the
// leaf it adds to, reading its neighbour, so without this the process's
// resident size grows by the whole spool (1 GB spooled during an outage made
// a 1.2 GB process, 1.1 GB of it the file) although its heap stays bounded.
//
// MADV_DONTNEED on a shared file mapping only drops the page table entries:
// the data stays in the page cache and the next read faults it back, so it
// is safe while other transactions read. It runs inside a read transaction,
// which holds off bbolt's remapping (a writer that grows the file waits for
// readers), so the range is the current mapping; tx.Size is where the
// file's pages end, within it.
func (s *Spool) dropResident() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		data, size := tx.DB().Info().Data, uintptr(tx.Size())
		if data != 0 && size > 0 {
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, size, syscall.MADV_DONTNEED)
		}
		return nil
	})
}

// dropPages is dropResident for the whole pages inside v, a value that tx
// read and the caller has copied out, so that a chunk being read never has
// more than one record's pages resident. It does nothing unless v lies
// inside the file mapping: on memory of the heap MADV_DONTNEED would zero it.
func dropPages(tx *bolt.Tx, v []byte) {
	if len(v) == 0 {
		return
	}
	base, size := tx.DB().Info().Data, uintptr(tx.Size())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	end := start + uintptr(len(v))
	if base == 0 || start < base || end > base+size {
		return
	}
	ps := uintptr(os.Getpagesize())
	lo, hi := (start+ps-1)&^(ps-1), end&^(ps-1)
	if hi > lo {
		_ = syscall.Madvise(v[lo-start:hi-start], syscall.MADV_DONTNEED)
	}
}
