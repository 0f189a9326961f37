package devo

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// unackedBytes is the number of bytes in the socket's send queue that the
// peer has not acknowledged yet: SIOCOUTQ, which Linux answers for TCP with
// write_seq − snd_una, sent or not.
func unackedBytes(raw syscall.RawConn) (int64, error) {
	var n int
	var ioErr error
	err := raw.Control(func(fd uintptr) {
		n, ioErr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	if err != nil {
		return 0, err
	}
	if ioErr != nil {
		return 0, ioErr
	}
	return int64(n), nil
}
