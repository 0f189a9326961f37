package fauxqs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func TestServerSQSAndS3(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	url := s.MustCreateQueue(t, "helper-test", nil)
	c := s.SQS()
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("hello")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != "hello" {
		t.Fatalf("received %+v, want one message \"hello\"", got.Messages)
	}

	s.MustCreateBucket(t, "helper-bucket")
	s3c := s.S3()
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("helper-bucket"), Key: aws.String("a/b c.txt"), Body: strings.NewReader("payload")}); err != nil {
		t.Fatal(err)
	}
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("helper-bucket"), Key: aws.String("a/b c.txt")})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if string(body) != "payload" {
		t.Fatalf("object body %q, want %q", body, "payload")
	}
}

// TestLoopbackOnly checks, from the kernel's socket table, that the
// emulator's listening socket is bound to 127.0.0.1 and not to every
// interface, and that Stop closes it.
func TestLoopbackOnly(t *testing.T) {
	s := Start(t)
	addrs := listeners(t, s.Port)
	if len(addrs) == 0 {
		t.Fatalf("no listening socket on port %d", s.Port)
	}
	for _, a := range addrs {
		if a != "0100007F" {
			t.Errorf("port %d is bound to %s (hex), want 127.0.0.1 only", s.Port, a)
		}
	}
	s.Stop()
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second); err == nil {
		c.Close()
		t.Fatalf("port %d still accepts connections after Stop", s.Port)
	}
}

// listeners returns the local addresses (hex, as in /proc/net/tcp{,6})
// listening on port.
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // 0A = LISTEN
				continue
			}
			host, p, ok := strings.Cut(fields[1], ":")
			if ok && p == fmt.Sprintf("%04X", port) {
				out = append(out, host)
			}
		}
		fh.Close()
	}
	return out
}
