package cloudtrail

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// benchFile builds a deterministic CloudTrail log file of about size bytes
// (decompressed) from a mix of realistic record shapes, and its gzip form.
func benchFile(tb testing.TB, size int) (plain, gz []byte, records int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	sources := []struct{ source, name string }{
		{"ec2.amazonaws.com", "DescribeInstances"}, {"s3.amazonaws.com", "GetObject"},
		{"sts.amazonaws.com", "AssumeRole"}, {"kms.amazonaws.com", "Decrypt"},
		{"iam.amazonaws.com", "ListRoles"}, {"lambda.amazonaws.com", "Invoke"},
		{"signin.amazonaws.com", "ConsoleLogin"}, {"logs.amazonaws.com", "PutLogEvents"},
	}
	regions := []string{"eu-west-1", "us-east-1", "us-west-2", "ap-southeast-2"}
	var buf bytes.Buffer
	buf.WriteString(`{"Records":[`)
	base := time.Date(2024, 5, 31, 13, 0, 0, 0, time.UTC)
	for buf.Len() < size {
		if records > 0 {
			buf.WriteByte(',')
		}
		s := sources[rng.IntN(len(sources))]
		region := regions[rng.IntN(len(regions))]
		items := make([]string, 1+rng.IntN(4))
		for k := range items {
			items[k] = fmt.Sprintf(`{"instanceId":"i-%017x","tags":[{"key":"team","value":"ops-%d"}]}`, rng.Uint64()>>4, rng.IntN(50))
		}
		fmt.Fprintf(&buf, `{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA4EXAMPLE%06d:session-%d","arn":"arn:aws:sts::123456789012:assumed-role/ops/session-%d","accountId":"123456789012","accessKeyId":"ASIA4EXAMPLE%08d","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA4EXAMPLE","arn":"arn:aws:iam::123456789012:role/ops","accountId":"123456789012","userName":"ops"},"attributes":{"creationDate":"2024-05-31T12:58:10Z","mfaAuthenticated":"false"}}},"eventTime":"%s","eventSource":"%s","eventName":"%s","awsRegion":"%s","sourceIPAddress":"198.51.%d.%d","userAgent":"aws-sdk-go-v2/1.30.0 os/linux lang/go#1.22 md/GOOS#linux md/GOARCH#amd64 api/%s","requestParameters":{"instancesSet":{"items":[%s]},"filterSet":{},"maxResults":%d,"note":"caf\u00e9 \"quoted\""},"responseElements":null,"requestID":"%08x-%04x-4%03x-8%03x-%012x","eventID":"%08x-%04x-4%03x-9%03x-%012x","readOnly":%t,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"%s"}}`,
			rng.IntN(1e6), rng.IntN(1000), rng.IntN(1000), rng.IntN(1e8),
			base.Add(time.Duration(records)*time.Second).Format(time.RFC3339), s.source, s.name, region,
			rng.IntN(256), rng.IntN(256), s.name, joinComma(items), 5+rng.IntN(100),
			rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()>>16,
			rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()>>16,
			rng.IntN(2) == 0, s.source)
		records++
	}
	buf.WriteString("]}")
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(buf.Bytes()); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), z.Bytes(), records
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}

func gunzipOnly(tb testing.TB, zr *gzip.Reader, gz []byte, sink []byte) {
	if err := zr.Reset(bytes.NewReader(gz)); err != nil {
		tb.Fatal(err)
	}
	for {
		_, err := zr.Read(sink)
		if err == io.EOF {
			return
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func readRecords(tb testing.TB, zr *gzip.Reader, gz []byte, want int) {
	if err := zr.Reset(bytes.NewReader(gz)); err != nil {
		tb.Fatal(err)
	}
	r := NewReader(zr, 0)
	n, picked := 0, 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		n++
		picked += len(rec.EventSource) + len(rec.EventID)
	}
	if n != want || picked == 0 {
		tb.Fatalf("read %d records, want %d", n, want)
	}
}

func naive(tb testing.TB, zr *gzip.Reader, gz []byte, want int) {
	if err := zr.Reset(bytes.NewReader(gz)); err != nil {
		tb.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		tb.Fatal(err)
	}
	recs := doc["Records"].([]any)
	for _, rec := range recs {
		m := rec.(map[string]any)
		_ = m["eventSource"].(string)
		if _, err := json.Marshal(m); err != nil {
			tb.Fatal(err)
		}
	}
	if len(recs) != want {
		tb.Fatalf("naive read %d records, want %d", len(recs), want)
	}
}

// BenchmarkCloudTrail runs, on one ~5 MB (decompressed) gzip object, the
// reader (gunzip + records + fields), gunzip alone, and a naive
// map[string]any decode/re-encode, and reports throughputs and the ratios
// the design targets: reader/gunzip >= 0.5 and reader/naive >= 8.
func BenchmarkCloudTrail(b *testing.B) {
	plain, gz, records := benchFile(b, 5<<20)
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		b.Fatal(err)
	}
	sink := make([]byte, 128<<10)
	var tReader, tGunzip, tNaive time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		readRecords(b, zr, gz, records)
		t1 := time.Now()
		gunzipOnly(b, zr, gz, sink)
		t2 := time.Now()
		naive(b, zr, gz, records)
		t3 := time.Now()
		tReader += t1.Sub(t0)
		tGunzip += t2.Sub(t1)
		tNaive += t3.Sub(t2)
	}
	n := float64(b.N)
	mb := float64(len(plain)) / 1e6
	b.ReportMetric(n*float64(records)/tReader.Seconds(), "records/s")
	b.ReportMetric(n*mb/tReader.Seconds(), "reader_MB/s")
	b.ReportMetric(n*mb/tGunzip.Seconds(), "gunzip_MB/s")
	b.ReportMetric(n*float64(records)/tNaive.Seconds(), "naive_records/s")
	b.ReportMetric(tGunzip.Seconds()/tReader.Seconds(), "ratio_vs_gunzip")
	b.ReportMetric(tNaive.Seconds()/tReader.Seconds(), "ratio_vs_naive")
	b.ReportMetric(0, "ns/op") // the per-iteration time mixes three runs; the metrics above are the result
}

// BenchmarkReaderPlain measures the record reader alone on decompressed
// input, without gzip.
func BenchmarkReaderPlain(b *testing.B) {
	plain, _, records := benchFile(b, 5<<20)
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(plain), 0)
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != records {
			b.Fatalf("%d records, want %d", n, records)
		}
	}
	b.ReportMetric(float64(b.N)*float64(records)/b.Elapsed().Seconds(), "records/s")
}
