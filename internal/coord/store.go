package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// A DynamoDB item holds at most 400 KB. A checkpoint up to inlineMax bytes
// lives in its lease item; a bigger one is cut into chunk items of
// chunkSize bytes. The inline limit is well below the item limit because
// every balancing round reads all lease items: large values there would
// make each round (every third of the lease duration) costly.
const (
	inlineMax = 16 << 10
	chunkSize = 300 << 10
)

// opTimeout bounds one checkpoint operation (several calls for a chunked
// value).
const opTimeout = 2 * time.Minute

// Store is the state.Store kept in the lease table. A Put writes only under
// a lease this collector holds, conditional on the table still naming this
// collector as owner with the epoch it took the lease with; otherwise it
// writes nothing, the lease's stream is stopped, and the error wraps
// lease.ErrNotHeld. Get and List read the table (strongly consistent).
// Delete is fenced the same way for a key this collector runs a stream of,
// and unconditional for other keys (operator tooling such as state.Reset).
type Store struct {
	c *Coordinator
}

var _ state.Store = (*Store)(nil)

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// Get returns the checkpoint saved under k.
func (s *Store) Get(k state.Key) ([]byte, bool, error) {
	id, err := itemKey(k)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// A concurrent Put may swing the pointer and delete the chunks this
	// read follows; reading the pointer again finds the new ones.
	for attempt := 0; ; attempt++ {
		var out *dynamodb.GetItemOutput
		err := retry(ctx, func() error {
			var err error
			out, err = s.c.db.GetItem(ctx, &dynamodb.GetItemInput{
				TableName:      aws.String(s.c.table),
				Key:            leaseItemKey(id),
				ConsistentRead: aws.Bool(true),
			})
			return err
		})
		if err != nil {
			return nil, false, fmt.Errorf("checkpoint %s: read: %w", k, err)
		}
		v, ok, err := s.value(ctx, id, out.Item)
		if errors.Is(err, errChunksMoved) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("checkpoint %s: %w", k, err)
		}
		return v, ok, nil
	}
}

var errChunksMoved = errors.New("checkpoint chunks replaced while reading")

// value returns the checkpoint of a lease item, reading its chunks when it
// has them.
func (s *Store) value(ctx context.Context, id string, item map[string]types.AttributeValue) ([]byte, bool, error) {
	if item == nil {
		return nil, false, nil
	}
	if v, ok := getB(item, attrCP); ok {
		return v, true, nil
	}
	ver := getS(item, attrCPVer)
	if ver == "" {
		return nil, false, nil
	}
	n := getN(item, attrCPN)
	var buf []byte
	got := int64(0)
	p := dynamodb.NewQueryPaginator(s.c.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.c.table),
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(chunkPK(id, ver))},
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("read chunks: %w", err)
		}
		for _, it := range out.Items {
			if getS(it, attrSK) != chunkSK(got) {
				return nil, false, errChunksMoved
			}
			d, _ := getB(it, attrData)
			buf = append(buf, d...)
			got++
		}
	}
	if got != n {
		return nil, false, errChunksMoved
	}
	return buf, true, nil
}

func chunkPK(id, ver string) string { return "chunk/" + id + "/" + ver }

func chunkSK(i int64) string { return fmt.Sprintf("%08d", i) }

// Put saves v under k, fenced by k's lease (see Store).
func (s *Store) Put(k state.Key, v []byte) error {
	id, err := itemKey(k)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	h := s.c.held[id]
	s.c.mu.Unlock()
	if h == nil {
		return errNotHeld(k)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// Retrying stops when the lease is given up meanwhile, except in a
	// handover: its stream is draining and still owns the lease until it
	// releases it, so its last checkpoints must land (the epoch still
	// fences them should the lease be taken after all).
	go func() {
		select {
		case <-h.lost:
			s.c.mu.Lock()
			handover := h.handover
			s.c.mu.Unlock()
			if !handover {
				cancel()
			}
		case <-ctx.Done():
		}
	}()

	var (
		update string
		vals   = map[string]types.AttributeValue{":me": str(s.c.owner), ":e": num(h.epoch)}
		ver    string
		n      int64
	)
	if len(v) <= inlineMax {
		update = "SET #cp = :v REMOVE #cpv, #cpn"
		vals[":v"] = &types.AttributeValueMemberB{Value: v}
	} else {
		// Chunks first, under a version id nobody reads yet; the fenced
		// pointer swing below makes them the checkpoint at once.
		ver, err = newVersion()
		if err != nil {
			return err
		}
		n, err = s.writeChunks(ctx, id, ver, v)
		if err != nil {
			s.deleteChunks(id, ver, n)
			select {
			case <-h.lost:
				return errNotHeld(k)
			default:
			}
			return fmt.Errorf("checkpoint %s: write chunks: %w", k, err)
		}
		update = "SET #cpv = :ver, #cpn = :n REMOVE #cp"
		vals[":ver"] = str(ver)
		vals[":n"] = num(n)
	}
	var out *dynamodb.UpdateItemOutput
	err = retry(ctx, func() error {
		var err error
		out, err = s.c.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           aws.String(s.c.table),
			Key:                 leaseItemKey(id),
			UpdateExpression:    aws.String(update),
			ConditionExpression: aws.String("#o = :me AND #e = :e"),
			ExpressionAttributeNames: map[string]string{
				"#o": attrOwner, "#e": attrEpoch, "#cp": attrCP, "#cpv": attrCPVer, "#cpn": attrCPN,
			},
			ExpressionAttributeValues: vals,
			ReturnValues:              types.ReturnValueAllOld,
		})
		return err
	})
	if err != nil {
		if ver != "" {
			s.deleteChunks(id, ver, n)
		}
		if isConditionFailed(err) {
			s.c.lose(id, h, "checkpoint write refused: another collector holds the lease")
			return errNotHeld(k)
		}
		select {
		case <-h.lost:
			return errNotHeld(k)
		default:
		}
		return fmt.Errorf("checkpoint %s: write: %w", k, err)
	}
	if old := getS(out.Attributes, attrCPVer); old != "" && old != ver {
		s.deleteChunks(id, old, getN(out.Attributes, attrCPN))
	}
	return nil
}

func newVersion() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return strconv.FormatInt(time.Now().UnixNano(), 36) + hex.EncodeToString(b[:]), nil
}

// writeChunks writes v as chunk items of version ver and returns how many
// it wrote (all of them when err is nil).
func (s *Store) writeChunks(ctx context.Context, id, ver string, v []byte) (int64, error) {
	var i int64
	for off := 0; off < len(v); off += chunkSize {
		end := min(off+chunkSize, len(v))
		err := retry(ctx, func() error {
			_, err := s.c.db.PutItem(ctx, &dynamodb.PutItemInput{
				TableName: aws.String(s.c.table),
				Item: map[string]types.AttributeValue{
					attrPK:   str(chunkPK(id, ver)),
					attrSK:   str(chunkSK(i)),
					attrData: &types.AttributeValueMemberB{Value: v[off:end]},
				},
			})
			return err
		})
		if err != nil {
			return i + 1, err // the failed one may have landed
		}
		i++
	}
	return i, nil
}

// deleteChunks removes the first n chunk items of version ver, best
// effort: a leftover chunk is garbage nobody reads, never a wrong value.
func (s *Store) deleteChunks(id, ver string, n int64) {
	ctx, cancel := s.ctx()
	defer cancel()
	for i := int64(0); i < n; i++ {
		_, err := s.c.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: aws.String(s.c.table),
			Key: map[string]types.AttributeValue{
				attrPK: str(chunkPK(id, ver)),
				attrSK: str(chunkSK(i)),
			},
		})
		if err != nil {
			s.c.log.Warn("old checkpoint chunk not deleted", "item", chunkPK(id, ver), "err", err)
			return
		}
	}
}

// Delete removes k's checkpoint (the lease itself stays).
func (s *Store) Delete(k state.Key) error {
	id, err := itemKey(k)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	h := s.c.held[id]
	_, running := s.c.runs[id]
	s.c.mu.Unlock()
	if h == nil && running {
		return errNotHeld(k)
	}
	cond := "attribute_exists(pk)"
	vals := map[string]types.AttributeValue{}
	names := map[string]string{"#cp": attrCP, "#cpv": attrCPVer, "#cpn": attrCPN}
	if h != nil {
		cond = "#o = :me AND #e = :e"
		vals[":me"], vals[":e"] = str(s.c.owner), num(h.epoch)
		names["#o"], names["#e"] = attrOwner, attrEpoch
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.c.table),
		Key:                      leaseItemKey(id),
		UpdateExpression:         aws.String("REMOVE #cp, #cpv, #cpn"),
		ConditionExpression:      aws.String(cond),
		ExpressionAttributeNames: names,
		ReturnValues:             types.ReturnValueAllOld,
	}
	if len(vals) > 0 {
		in.ExpressionAttributeValues = vals
	}
	ctx, cancel := s.ctx()
	defer cancel()
	var out *dynamodb.UpdateItemOutput
	err = retry(ctx, func() error {
		var err error
		out, err = s.c.db.UpdateItem(ctx, in)
		return err
	})
	switch {
	case err == nil:
	case isConditionFailed(err) && h == nil:
		return nil // no such lease: nothing to delete
	case isConditionFailed(err):
		s.c.lose(id, h, "checkpoint delete refused: another collector holds the lease")
		return errNotHeld(k)
	default:
		return fmt.Errorf("checkpoint %s: delete: %w", k, err)
	}
	if old := getS(out.Attributes, attrCPVer); old != "" {
		s.deleteChunks(id, old, getN(out.Attributes, attrCPN))
	}
	return nil
}

// List returns every checkpoint under prefix (state.Store's prefix rules).
func (s *Store) List(prefix state.Key) (map[state.Key][]byte, error) {
	fs := []string{prefix.Input, prefix.Service, prefix.Region, prefix.Sub}
	n := 0
	for n < len(fs) && fs[n] != "" {
		n++
	}
	for _, f := range fs[n:] {
		if f != "" {
			return nil, fmt.Errorf("checkpoint prefix %q: a field is set after an empty one", prefix.String())
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	items, err := s.c.scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: list: %w", err)
	}
	out := map[state.Key][]byte{}
	for _, it := range items {
		k := keyOf(it)
		kf := []string{k.Input, k.Service, k.Region, k.Sub}
		match := true
		for i := 0; i < n; i++ {
			if kf[i] != fs[i] {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		v, ok, err := s.value(ctx, getS(it, attrSK), it)
		if errors.Is(err, errChunksMoved) {
			v, ok, err = s.Get(k)
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", k, err)
		}
		if ok {
			out[k] = v
		}
	}
	return out, nil
}

// Close does nothing: the Coordinator owns the connection (Coordinator.Close).
func (s *Store) Close() error { return nil }

// retry calls op until it succeeds, a conditional write is refused (a
// final answer), or ctx ends, waiting 100 ms, 200 ms, … up to 5 s between
// tries. The SDK already retries each call a few times; this covers a
// DynamoDB outage or throttling longer than that, so that a checkpoint is
// saved once the table answers again (while the lease lasts: after that the
// write is refused anyway).
func retry(ctx context.Context, op func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := op()
		if err == nil || isConditionFailed(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
