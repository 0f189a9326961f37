//go:build !linux

package spool

// dropResident does nothing outside Linux (see resident_linux.go).
func (s *Spool) dropResident() {}
