// Package e2e runs the built collector binary end to end: fauxqs as AWS,
// a private rsyslogd as the Devo mutual-TLS receiver. Its tests are the
// process-level promises: every event arrives once the SQS messages are
// gone, SIGTERM drains and exits 0, spooled events survive kill -9, a
// rejected client certificate stops the process at start.
package e2e
