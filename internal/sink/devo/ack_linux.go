package devo

import (
	"syscall"
	"unsafe"
)

// unackedBytes is the number of bytes in the socket's send queue that the
// peer has not acknowledged yet: SIOCOUTQ, which Linux answers for TCP with
// write_seq − snd_una, sent or not. (SIOCOUTQ and TIOCOUTQ are the same
// request number on Linux; package syscall names only the latter.)
func unackedBytes(raw syscall.RawConn) (int64, error) {
	var n int32
	var errno syscall.Errno
	err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int64(n), nil
}
