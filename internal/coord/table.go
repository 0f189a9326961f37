package coord

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// The table has a string partition key "pk" and a string sort key "sk".
//
// Lease items share the partition "lease" (one Query reads them all) and
// are sorted by the stream's item key. Their attributes:
//
//	in, svc, reg, sub  the checkpoint key's fields
//	owner              the collector holding the lease; absent when unowned
//	counter            incremented by every renewal, take and release
//	epoch              incremented by every take: the fencing token
//	claim              a collector that asked the owner to hand it over
//	cp                 the checkpoint, when small enough to keep inline
//	cpv, cpn           or: the version id and count of its chunk items
//
// Chunk items hold big checkpoints: partition "chunk/<item key>/<version>",
// sort key the chunk's index (zero-padded), attribute "data".
const (
	attrPK      = "pk"
	attrSK      = "sk"
	leasePK     = "lease"
	attrInput   = "in"
	attrService = "svc"
	attrRegion  = "reg"
	attrSub     = "sub"
	attrOwner   = "owner"
	attrCounter = "counter"
	attrEpoch   = "epoch"
	attrClaim   = "claim"
	attrCP      = "cp"
	attrCPVer   = "cpv"
	attrCPN     = "cpn"
	attrData    = "data"
)

// itemKey is the sort key of k's lease item: its fields path-escaped (so a
// "/" in a log group name cannot make two keys collide) and joined by "/".
func itemKey(k state.Key) (string, error) {
	fs := []string{k.Input, k.Service, k.Region, k.Sub}
	for i, f := range fs {
		if strings.ContainsRune(f, 0) {
			return "", fmt.Errorf("checkpoint key %q: a field contains a NUL byte", k.String())
		}
		fs[i] = url.PathEscape(f)
	}
	return strings.Join(fs, "/"), nil
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func leaseItemKey(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(leasePK), attrSK: str(id)}
}

func getS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func getB(item map[string]types.AttributeValue, name string) ([]byte, bool) {
	if v, ok := item[name].(*types.AttributeValueMemberB); ok {
		return v.Value, true
	}
	return nil, false
}

func keyOf(item map[string]types.AttributeValue) state.Key {
	return state.Key{
		Input:   getS(item, attrInput),
		Service: getS(item, attrService),
		Region:  getS(item, attrRegion),
		Sub:     getS(item, attrSub),
	}
}

// ensureTable creates the table when it does not exist (on-demand billing)
// and waits until it is ACTIVE.
func (c *Coordinator) ensureTable(ctx context.Context) error {
	_, err := c.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.table)})
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil:
	case errors.As(err, &nf):
		_, err = c.db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:   aws.String(c.table),
			BillingMode: types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
			},
		})
		var inUse *types.ResourceInUseException
		switch {
		case errors.As(err, &inUse): // another collector created it first
		case err != nil:
			return fmt.Errorf("coordination: create table %s: %w", c.table, err)
		default:
			c.log.Info("coordination table created") // the logger carries the table
		}
	default:
		return fmt.Errorf("coordination: describe table %s: %w", c.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(c.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.table)}, 5*time.Minute); err != nil {
		return fmt.Errorf("coordination: table %s not active: %w", c.table, err)
	}
	return nil
}

// createLease writes k's lease item, unowned, unless it exists.
func (c *Coordinator) createLease(ctx context.Context, id string, k state.Key) error {
	item := leaseItemKey(id)
	item[attrInput] = str(k.Input)
	item[attrService] = str(k.Service)
	item[attrRegion] = str(k.Region)
	item[attrSub] = str(k.Sub)
	item[attrCounter] = num(0)
	item[attrEpoch] = num(0)
	for {
		cctx, cancel := context.WithTimeout(ctx, c.callTimeout())
		_, err := c.db.PutItem(cctx, &dynamodb.PutItemInput{
			TableName:           aws.String(c.table),
			Item:                item,
			ConditionExpression: aws.String("attribute_not_exists(pk)"),
		})
		cancel()
		if err == nil || isConditionFailed(err) {
			return nil
		}
		// The table is unreachable for now: the stream waits for it, as it
		// would wait to hold its lease.
		c.log.Warn("lease item not created, retrying", "key", k.String(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.dur / 3):
		}
	}
}

// scan reads every lease item.
func (c *Coordinator) scan(ctx context.Context) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	p := dynamodb.NewQueryPaginator(c.db, &dynamodb.QueryInput{
		TableName:                 aws.String(c.table),
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(leasePK)},
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		items = append(items, out.Items...)
	}
	return items, nil
}

// renew increments the counter of a held lease, conditional on this
// collector still owning it with the epoch it took it with. Conditioning
// on the epoch rather than the counter keeps a renewal whose answer was
// lost from costing the lease (the next renewal still matches). It returns
// the item as it is now.
func (c *Coordinator) renew(ctx context.Context, id string, epoch int64) (map[string]types.AttributeValue, error) {
	out, err := c.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(c.table),
		Key:                 leaseItemKey(id),
		UpdateExpression:    aws.String("SET #c = #c + :one"),
		ConditionExpression: aws.String("#o = :me AND #e = :e"),
		ExpressionAttributeNames: map[string]string{
			"#c": attrCounter, "#o": attrOwner, "#e": attrEpoch,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":one": num(1), ":me": str(c.owner), ":e": num(epoch),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		return nil, err
	}
	return out.Attributes, nil
}

// take makes this collector the owner of a lease it saw unowned (owner "")
// or owned by owner, with the counter it saw: the write fails when anyone
// renewed, took or released it since. It increments the epoch, so writes
// fenced by any earlier holding fail from now on.
func (c *Coordinator) take(ctx context.Context, id, owner string, counter int64) (epoch, newCounter int64, err error) {
	cond := "#o = :old AND #c = :c"
	vals := map[string]types.AttributeValue{
		":one": num(1), ":me": str(c.owner), ":c": num(counter),
	}
	if owner == "" {
		cond = "attribute_not_exists(#o) AND #c = :c"
	} else {
		vals[":old"] = str(owner)
	}
	out, err := c.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(c.table),
		Key:                 leaseItemKey(id),
		UpdateExpression:    aws.String("SET #o = :me, #c = #c + :one, #e = #e + :one REMOVE #cl"),
		ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: map[string]string{
			"#c": attrCounter, "#o": attrOwner, "#e": attrEpoch, "#cl": attrClaim,
		},
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return 0, 0, err
	}
	return getN(out.Attributes, attrEpoch), getN(out.Attributes, attrCounter), nil
}

// release gives a held lease up: unowned, counter incremented so that
// observers see the change at once.
func (c *Coordinator) release(ctx context.Context, h *holding) error {
	id, err := itemKey(h.key)
	if err != nil {
		return err
	}
	_, err = c.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(c.table),
		Key:                 leaseItemKey(id),
		UpdateExpression:    aws.String("SET #c = #c + :one REMOVE #o, #cl"),
		ConditionExpression: aws.String("#o = :me AND #e = :e"),
		ExpressionAttributeNames: map[string]string{
			"#c": attrCounter, "#o": attrOwner, "#e": attrEpoch, "#cl": attrClaim,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":one": num(1), ":me": str(c.owner), ":e": num(h.epoch),
		},
	})
	if isConditionFailed(err) {
		return nil // not ours any more: nothing to give up
	}
	return err
}

// claim asks owner to hand a lease over: its next renewal sees the claim,
// it stops the stream and releases the lease.
func (c *Coordinator) claim(ctx context.Context, id, owner string) error {
	_, err := c.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(c.table),
		Key:                 leaseItemKey(id),
		UpdateExpression:    aws.String("SET #cl = :me"),
		ConditionExpression: aws.String("#o = :old AND attribute_not_exists(#cl)"),
		ExpressionAttributeNames: map[string]string{
			"#o": attrOwner, "#cl": attrClaim,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": str(c.owner), ":old": str(owner),
		},
	})
	return err
}

// TableStatus is what Describe found.
type TableStatus struct {
	// Exists is false when the table is missing (Open would create it).
	Exists bool
	// Status is DynamoDB's table status ("ACTIVE", …) when it exists.
	Status string
	// Leases counts the lease items; Owned those with an owner.
	Leases, Owned int
}

// Describe reads the table of c without changing anything (validate
// --check): whether it exists, and how many leases it holds. An error means
// the table cannot be read with these credentials.
func Describe(ctx context.Context, c Config) (TableStatus, error) {
	db := newClient(c)
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.Table)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return TableStatus{}, nil
	}
	if err != nil {
		return TableStatus{}, err
	}
	st := TableStatus{Exists: true, Status: string(out.Table.TableStatus)}
	p := dynamodb.NewQueryPaginator(db, &dynamodb.QueryInput{
		TableName:                 aws.String(c.Table),
		KeyConditionExpression:    aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(leasePK)},
		ProjectionExpression:      aws.String("#o"),
		ExpressionAttributeNames:  map[string]string{"#o": attrOwner},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return st, err
		}
		for _, it := range page.Items {
			st.Leases++
			if getS(it, attrOwner) != "" {
				st.Owned++
			}
		}
	}
	return st, nil
}

// newClient is the DynamoDB client of c: its credentials, with the region
// and endpoint overrides.
func newClient(c Config) *dynamodb.Client {
	return dynamodb.NewFromConfig(c.AWS, func(o *dynamodb.Options) {
		if c.Region != "" {
			o.Region = c.Region
		}
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	})
}
