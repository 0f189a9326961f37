// Command emulator runs a local AWS emulator (fauxqs: SQS and S3) with the
// queues and the bucket of the files in examples/, sends sample events for
// every SQS/S3 service, prints the endpoint, the queue names and the line
// that runs the collector against it, and runs until Ctrl-C. A user can
// point their own configuration at it (endpoint_url, or AWS_ENDPOINT_URL
// with endpoint_url: "${AWS_ENDPOINT_URL:-}") to try it without an AWS
// account.
//
//	go run ./tools/emulator [-port 4566] [-seed=false]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/localaws"
)

func main() {
	port := flag.Int("port", 4566, "TCP port on 127.0.0.1")
	seed := flag.Bool("seed", true, "send sample events for every SQS/S3 service")
	flag.Parse()
	if err := run(*port, *seed); err != nil {
		fmt.Fprintf(os.Stderr, "emulator: %v\n", err)
		os.Exit(1)
	}
}

func run(port int, seed bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	emu, err := fauxqs.StartAt(start, port)
	if err != nil {
		return fmt.Errorf("start fauxqs on 127.0.0.1:%d (is the port taken? try -port): %w", port, err)
	}
	defer emu.Stop()
	env, err := localaws.Setup(start, emu)
	if err != nil {
		return err
	}

	fmt.Printf("AWS emulator (fauxqs, SQS and S3) at %s\n", emu.URL)
	fmt.Printf("region %s, bucket %s, any access key and secret\n\n", localaws.Region, localaws.Bucket)
	fmt.Println("queues:")
	for _, s := range localaws.Services {
		line := fmt.Sprintf("  %-28s service %-24s (examples/%s)", s.Queue, s.Name, s.Example)
		if seed {
			want, err := env.Seed(start, s.Name)
			if err != nil {
				return fmt.Errorf("seed %s: %w", s.Name, err)
			}
			line += ", sample events: " + describe(want)
		}
		fmt.Println(line)
	}
	fmt.Printf(`
Run the collector against it (events printed on the console):

  AWS_ENDPOINT_URL=%[1]s AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
    bin/devo-aws-collector run --config examples/try-locally.yaml

Your own file: set inputs.aws.endpoint_url: %[1]s (or endpoint_url: "${AWS_ENDPOINT_URL:-}"),
regions: [%[2]s], credentials: {} and the queue names above.

Press Ctrl-C to stop the emulator.
`, emu.URL, localaws.Region)
	<-ctx.Done()
	fmt.Println("\nstopping the emulator")
	return nil
}

func describe(want map[string]int) string {
	tables := make([]string, 0, len(want))
	for t := range want {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	s := ""
	for i, t := range tables {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", want[t], t)
	}
	return s
}
