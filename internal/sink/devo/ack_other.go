//go:build !linux

package devo

import (
	"errors"
	"syscall"
)

// unackedBytes is not available outside Linux: delivery then rests on
// time alone (ack_settle after the write).
func unackedBytes(syscall.RawConn) (int64, error) {
	return 0, errors.New("the peer's acknowledgement is not readable on this system")
}
