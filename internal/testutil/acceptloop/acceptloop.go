// Package acceptloop serves a test receiver's listener: every accepted
// connection in its own goroutine, until the listener is closed.
package acceptloop

import (
	"net"
	"sync"
)

// Go starts a goroutine that accepts connections on ln until Accept fails
// (ln was closed) and calls serve for each in a goroutine of its own. wg
// counts the loop and every serve, so closing ln and then wg.Wait waits for
// all of them; serve closes its connection when it needs to.
func Go(ln net.Listener, wg *sync.WaitGroup, serve func(net.Conn)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(nc)
			}()
		}
	}()
}
