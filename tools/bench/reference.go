package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"
)

// refConfig is the reference pipeline's job, passed on its command line.
type refConfig struct {
	Endpoint, Queue, Addr, Format string
	CA, Cert, Key                 string
	Objects, Workers              int
}

// runReference is the lean pipeline the collector is measured against: the
// least work that delivers the same events. Workers receive notifications
// (up to 10, 1 s long poll), GetObject, gunzip with klauspost, split the
// records in one pass, frame each as a Devo line and write it through a 64
// KiB buffer on their own TLS connection, flush, and delete the message.
// There is no acknowledgement, no spool, no tagging beyond the event source:
// it is a floor, not a product.
func runReference(rc refConfig) error {
	tlsCfg, err := clientTLS(rc)
	if err != nil {
		return err
	}
	return drainQueue(rc, func() (objectHandler, func(), error) {
		conn, err := tls.Dial("tcp", rc.Addr, tlsCfg)
		if err != nil {
			return nil, nil, err
		}
		w := bufio.NewWriterSize(conn, 64<<10)
		var zr *gzip.Reader
		var body bytes.Buffer
		var line []byte
		handle := func(obj io.Reader) error {
			var err error
			if zr == nil {
				zr, err = gzip.NewReader(obj)
			} else {
				err = zr.Reset(obj)
			}
			if err != nil {
				return err
			}
			body.Reset()
			if _, err := body.ReadFrom(zr); err != nil {
				return err
			}
			now := time.Now().Format(time.Stamp)
			emit := func(tag string, rec []byte) error {
				line = append(line[:0], "<14>"...)
				line = append(line, now...)
				line = append(line, " bench "...)
				line = append(line, tag...)
				line = append(line, ": "...)
				line = append(line, rec...)
				line = append(line, '\n')
				_, err := w.Write(line)
				return err
			}
			if rc.Format == "cloudtrail" {
				err = splitRecords(body.Bytes(), func(rec []byte) error {
					return emit("cloud.aws.cloudtrail."+eventSource(rec)+".123456789012.us-east-1.1", rec)
				})
			} else {
				err = splitLines(body.Bytes(), func(l []byte) error { return emit("cloud.aws.vpc.flowlogs.123456789012.us-east-1.1", l) })
			}
			if err != nil {
				return err
			}
			return w.Flush()
		}
		return handle, func() { conn.Close() }, nil
	})
}

func clientTLS(rc refConfig) (*tls.Config, error) {
	kp, err := tls.LoadX509KeyPair(rc.Cert, rc.Key)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(rc.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{kp}, RootCAs: pool, ServerName: "localhost"}, nil
}

type notification struct {
	Records []struct {
		S3 struct {
			Bucket struct{ Name string }
			Object struct{ Key string }
		}
	}
}

// splitRecords calls f with each element of the top-level "Records" array,
// in one pass over the bytes: strings and nesting are tracked, nothing is
// decoded. Inside a string it jumps to the next quote with IndexByte (the
// bulk of a record is strings), outside to the next structural byte.
func splitRecords(doc []byte, f func([]byte) error) error {
	i := bytes.Index(doc, []byte(`"Records"`))
	if i < 0 {
		return errors.New("no Records")
	}
	i = bytes.IndexByte(doc[i:], '[') + i + 1
	depth, start := 0, -1
	for i < len(doc) {
		for i < len(doc) && !structural[doc[i]] {
			i++
		}
		if i == len(doc) {
			break
		}
		switch doc[i] {
		case '"':
			// Skip the string: the next quote not escaped by an odd run of
			// backslashes.
			for {
				k := bytes.IndexByte(doc[i+1:], '"')
				if k < 0 {
					return io.ErrUnexpectedEOF
				}
				i += k + 1
				bs := 0
				for p := i - 1; doc[p] == '\\'; p-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
			}
		case '{', '[':
			if depth == 0 {
				start = i
			}
			depth++
		default: // '}' or ']'
			if depth == 0 {
				return nil // the end of Records
			}
			depth--
			if depth == 0 {
				if err := f(doc[start : i+1]); err != nil {
					return err
				}
			}
		}
		i++
	}
	return io.ErrUnexpectedEOF
}

// structural marks the bytes splitRecords stops at outside strings.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// eventSource is the service part of a record's "eventSource" (ec2 of
// ec2.amazonaws.com).
func eventSource(rec []byte) string {
	const k = `"eventSource":"`
	i := bytes.Index(rec, []byte(k))
	if i < 0 {
		return "unknown"
	}
	rest := rec[i+len(k):]
	if j := bytes.IndexByte(rest, '.'); j >= 0 {
		return string(rest[:j])
	}
	return "unknown"
}

// splitLines calls f with each line after the header.
func splitLines(data []byte, f func([]byte) error) error {
	first := true
	for len(data) > 0 {
		j := bytes.IndexByte(data, '\n')
		var l []byte
		if j < 0 {
			l, data = data, nil
		} else {
			l, data = data[:j], data[j+1:]
		}
		if first {
			first = false
			continue
		}
		if len(l) > 0 {
			if err := f(l); err != nil {
				return err
			}
		}
	}
	return nil
}
