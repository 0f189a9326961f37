//go:build !linux

package spool

import bolt "go.etcd.io/bbolt"

// dropResident does nothing outside Linux (see resident_linux.go).
func (s *Spool) dropResident() {}

// dropPages does nothing outside Linux (see resident_linux.go).
func dropPages(*bolt.Tx, []byte) {}
