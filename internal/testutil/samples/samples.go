// Package samples composes realistic (not real) AWS objects and messages
// for the demo and the end-to-end tests: CloudTrail, VPC Flow v2/v5,
// CloudFront and Umbrella files with their S3 notifications, EventBridge
// events and Security Hub findings (spec/aws-formats.md).
package samples

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Composed samples (spec/aws-formats.md): realistic, not real data.

// Account is the account id inside the composed records.
const Account = "123456789012"

// Gzip compresses s.
func Gzip(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

// Object is one composed S3 object.
type Object struct {
	Queue, Key string // Queue is a suggested queue name for its service
	Body       []byte // gzip-compressed
	Events     int    // events the collector emits for it
}

// CloudTrailSources are the event sources CloudTrail records rotate through.
var CloudTrailSources = []string{"ec2", "s3", "iam", "sts", "kms", "signin"}

// CloudTrail is a CloudTrail log file with n records; id makes its key unique.
func CloudTrail(id, n int) Object {
	var recs []string
	for i := 0; i < n; i++ {
		src := CloudTrailSources[i%len(CloudTrailSources)]
		recs = append(recs, fmt.Sprintf(`{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA4EXAMPLEID:ana","arn":"arn:aws:sts::%[1]s:assumed-role/ops/ana","accountId":"%[1]s"},"eventTime":"2024-05-31T13:14:%02[2]dZ","eventSource":"%[3]s.amazonaws.com","eventName":"Describe%[4]d","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.23","userAgent":"aws-cli/2.15.30","requestParameters":null,"responseElements":null,"requestID":"req-%[4]d","eventID":"evt-%[4]d","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"%[1]s","eventCategory":"Management"}`,
			Account, i%60, src, i))
	}
	return Object{
		Queue:  "demo-cloudtrail",
		Key:    "AWSLogs/" + Account + "/CloudTrail/us-east-1/2024/05/31/" + Account + fmt.Sprintf("_CloudTrail_us-east-1_20240531T1315Z_%08x.json.gz", id),
		Body:   Gzip(`{"Records":[` + strings.Join(recs, ",") + `]}`),
		Events: n,
	}
}

const vpcV2Header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"

// VPCFlow is a VPC Flow Logs file in the default (version 2) or a custom
// version 5 format with n lines; id makes its key unique.
func VPCFlow(id, version, n int) Object {
	var b strings.Builder
	if version == 2 {
		b.WriteString(vpcV2Header + "\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "2 %s eni-07e1d2c3b4a596870 10.12.3.%d 172.31.8.19 443 %d 6 18 9432 1717161240 1717161300 ACCEPT OK\n", Account, i%250, 50000+i)
		}
	} else {
		b.WriteString(vpcV2Header + " vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "5 %s eni-07e1d2c3b4a596870 10.12.3.45 52.94.5.100 %d 443 6 12 5120 1717161240 1717161300 ACCEPT OK vpc-0123456789abcdef0 subnet-0fedcba9876543210 i-0a1b2c3d4e5f60718 19 IPv4 10.12.3.45 52.94.5.100 us-east-1 use1-az2 - - - DYNAMODB egress 1\n", Account, 50000+i)
		}
	}
	return Object{
		Queue:  "demo-s3-logs",
		Key:    fmt.Sprintf("AWSLogs/%[1]s/vpcflowlogs/us-east-1/2024/05/31/%[1]s_vpcflowlogs_us-east-1_fl-0a1b2c3d4e5f6071%[2]d_20240531T1315Z_%08[3]x.log.gz", Account, version, id),
		Body:   Gzip(b.String()),
		Events: n,
	}
}

// CloudFront is a CloudFront standard log file with n lines.
func CloudFront(id, n int) Object {
	var b strings.Builder
	b.WriteString("#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end\n")
	for i := 0; i < n; i++ {
		fields := []string{"2024-05-31", fmt.Sprintf("13:05:%02d", i%60), "FRA56-P3", "5120", "198.51.100.88", "GET", "d3example9xyz.cloudfront.net",
			fmt.Sprintf("/assets/app%d.js", i), "200", "https://shop.example.com/", "Mozilla/5.0%20(X11;%20Linux%20x86_64)", "v=42", "-", "Hit",
			"Qm9ndXNSZXF1ZXN0SWQ9PQ==", "shop.example.com", "https", "412", "0.004", "-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "Hit", "HTTP/2.0",
			"-", "-", "50312", "0.004", "Hit", "application/javascript", "5120", "-", "-"}
		b.WriteString(strings.Join(fields, "\t") + "\n")
	}
	return Object{Queue: "demo-s3-logs", Key: fmt.Sprintf("cf/E2QWRUHEXAMPLE.2024-05-31-13.%08x.gz", id), Body: Gzip(b.String()), Events: n}
}

// Umbrella is a Cisco Umbrella export of kind dnslogs, iplogs or proxylogs.
func Umbrella(id int, kind string, n int) Object {
	var b strings.Builder
	for i := 0; i < n; i++ {
		switch kind {
		case "dnslogs":
			fmt.Fprintf(&b, `"2024-05-31 13:05:%02d","ana@acme.example","ana@acme.example,LAPTOP-ANA,HQ Network","10.20.1.15","198.51.100.4","Blocked","1 (A)","NOERROR","bad-domain%d.example.","Malware","AD Users","AD Users,Anyconnect Roaming Client,Networks","Malware","512334","","7654321"`+"\n", i%60, i)
		case "iplogs":
			fmt.Fprintf(&b, `"2024-05-31 13:05:%02d","HQ Network","10.20.1.15","%d","203.0.113.99","443","Command and Control"`+"\n", i%60, 50000+i)
		default:
			fmt.Fprintf(&b, `"2024-05-31 13:05:%02d","LAPTOP-ANA","10.20.1.15","198.51.100.4","93.184.216.34","text/html","ALLOWED","https://www.example.com/p%d.html","","Mozilla/5.0","200","612","14230","14230","","Search Engines","","","","","","Roaming Computers","","LAPTOP-ANA,HQ Network","Roaming Computers,Networks","GET","","","","","",""`+"\n", i%60, i)
		}
	}
	return Object{Queue: "demo-umbrella", Key: fmt.Sprintf("umbrella/%s/2024-05-31/2024-05-31-13-10-%04x.csv.gz", kind, id), Body: Gzip(b.String()), Events: n}
}

// S3Notification is the body S3 would send for key in bucket.
func S3Notification(bucket, key string, size int) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-31T13:15:02.418Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"devo-collector","bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},"object":{"key":%q,"size":%d}}}]}`,
		bucket, bucket, key, size)
}

// EventBridgeSources are the sources EventBridge events rotate through.
var EventBridgeSources = []string{"aws.ec2", "aws.ssm", "aws.kms", "aws.s3", "aws.tag", "com.acme.orders"}

// EventBridge is the i-th composed EventBridge event (sources rotate).
func EventBridge(i int) string {
	return fmt.Sprintf(`{"version":"0","id":"0c7e1d54-9a2b-4f3e-b8d7-%012d","detail-type":"Demo Notification","source":%q,"account":"%s","time":"2024-05-31T13:20:%02dZ","region":"us-east-1","resources":[],"detail":{"n":%d}}`,
		i, EventBridgeSources[i%len(EventBridgeSources)], Account, i%60, i)
}

// SecurityHub is a Security Hub event carrying the given number of findings.
func SecurityHub(findings int) string {
	var fs []string
	for i := 0; i < findings; i++ {
		fs = append(fs, fmt.Sprintf(`{"SchemaVersion":"2018-10-08","Id":"arn:aws:securityhub:us-east-1:%[1]s:finding/demo-%[2]d","ProductArn":"arn:aws:securityhub:us-east-1::product/aws/securityhub","AwsAccountId":"%[1]s","Types":["Software and Configuration Checks"],"CreatedAt":"2024-05-30T08:00:00.000Z","UpdatedAt":"2024-05-31T13:24:10.000Z","Severity":{"Label":"HIGH","Normalized":70},"Title":"Demo finding %[2]d","RecordState":"ACTIVE"}`, Account, i))
	}
	return fmt.Sprintf(`{"version":"0","id":"5e2d1c0b-a9f8-4e7d-b6c5-a4b3c2d1e0f9","detail-type":"Security Hub Findings - Imported","source":"aws.securityhub","account":"%s","time":"2024-05-31T13:25:00Z","region":"us-east-1","resources":[],"detail":{"findings":[%s]}}`,
		Account, strings.Join(fs, ","))
}

// BusyTrail is a CloudTrail log file of n records sized like a busy
// account's (about 1.8 KB each, nested identity, request, response and TLS
// members) with pseudo-random identifiers, addresses and times drawn from
// seed, so it compresses about as well as a real trail (8–12×) rather than
// the 100× of repeated text. For benchmarks; id makes its key unique.
func BusyTrail(id, n int, seed uint64) Object {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	hex := func(k int) string {
		const digits = "0123456789abcdef"
		out := make([]byte, k)
		for i := range out {
			out[i] = digits[rng.IntN(16)]
		}
		return string(out)
	}
	uuid := func() string { return hex(8) + "-" + hex(4) + "-" + hex(4) + "-" + hex(4) + "-" + hex(12) }
	var b bytes.Buffer
	b.WriteString(`{"Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		src := CloudTrailSources[rng.IntN(len(CloudTrailSources))]
		user := rng.IntN(400)
		fmt.Fprintf(&b, `{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA%s:session-%d","arn":"arn:aws:sts::%s:assumed-role/platform-ops-%d/session-%d","accountId":"%s","accessKeyId":"ASIA%s","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA%s","arn":"arn:aws:iam::%s:role/platform-ops-%d","accountId":"%s","userName":"platform-ops-%d"},"webIdFederationData":{},"attributes":{"creationDate":"2024-05-31T12:%02d:%02dZ","mfaAuthenticated":"false"}}},`,
			strings.ToUpper(hex(17)), user, Account, user%20, user, Account, strings.ToUpper(hex(16)), strings.ToUpper(hex(17)), Account, user%20, Account, user%20, rng.IntN(60), rng.IntN(60))
		fmt.Fprintf(&b, `"eventTime":"2024-05-31T13:%02d:%02dZ","eventSource":"%s.amazonaws.com","eventName":"Describe%s","awsRegion":"us-east-1","sourceIPAddress":"%d.%d.%d.%d","userAgent":"aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/%s#1.170.0 exec-env/AWS_ECS_FARGATE",`,
			rng.IntN(60), rng.IntN(60), src, hex(6), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256), src)
		fmt.Fprintf(&b, `"requestParameters":{"instancesSet":{"items":[{"instanceId":"i-%s"},{"instanceId":"i-%s"}]},"filterSet":{"items":[{"name":"tag:team","valueSet":{"items":[{"value":"payments-%d"}]}}]},"maxResults":%d,"nextToken":"%s"},"responseElements":null,`,
			hex(17), hex(17), rng.IntN(30), rng.IntN(1000), hex(64))
		fmt.Fprintf(&b, `"requestID":"%s","eventID":"%s","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"%s","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"%s.us-east-1.amazonaws.com"},"sessionCredentialFromConsole":"false","resources":[{"accountId":"%s","type":"AWS::EC2::Instance","ARN":"arn:aws:ec2:us-east-1:%s:instance/i-%s"}]}`,
			uuid(), uuid(), Account, src, Account, Account, hex(17))
	}
	b.WriteString(`]}`)
	return Object{
		Queue:  "bench-cloudtrail",
		Key:    "AWSLogs/" + Account + "/CloudTrail/us-east-1/2024/05/31/" + Account + fmt.Sprintf("_CloudTrail_us-east-1_20240531T1315Z_%08x.json.gz", id),
		Body:   Gzip(b.String()),
		Events: n,
	}
}
