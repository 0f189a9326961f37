package main

import (
	"compress/gzip"
	"fmt"
	"io"
)

// runPlain is the plain SDK loop the issue sets the collector's wall-clock
// target against: what a few lines of Go with the AWS SDK do with the same
// queue, and no more. Workers receive notifications (up to 10, 1 s long
// poll), GetObject, gunzip the body with the standard library into
// io.Discard, and delete the message. Nothing is parsed, framed or sent: it
// measures how fast the emulator hands the objects out and they decompress,
// the ceiling for any pipeline that must also deliver them.
func runPlain(rc refConfig) error {
	return drainQueue(rc, func() (objectHandler, func(), error) {
		handle := func(obj io.Reader) error {
			zr, err := gzip.NewReader(obj)
			if err == nil {
				_, err = io.Copy(io.Discard, zr)
			}
			if err != nil {
				return fmt.Errorf("gunzip: %w", err)
			}
			return nil
		}
		return handle, func() {}, nil
	})
}
