package s3sqs

import (
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
)

// appendPayload appends the Devo payload of one CloudTrail record. The
// reader's validating pass already knows whether the record is plain
// (compact, valid UTF-8, no top-level pulling-id member): such a record, the
// common one, is copied with the pulling id appended and is not scanned
// again. Anything else goes through jsonpay.Append. Both give the same bytes
// (TestAppendPayload).
func appendPayload(dst []byte, rec *cloudtrail.Record, id string) ([]byte, error) {
	if rec.Plain {
		return jsonpay.AppendPlain(dst, rec.Raw, id), nil
	}
	return jsonpay.Append(dst, rec.Raw, id)
}
