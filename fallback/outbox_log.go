package fallback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record types in the outbox log.
const (
	// obItem is an enqueued item: seq, enqueued time, key, stream, payload.
	obItem byte = 1 + iota
	// obDone says item seq was delivered: seq, key, stream.
	obDone
	// obDead says item seq failed for good: seq, key, stream, reason.
	obDead
	// obDeadCopy is a dead item copied forward out of a segment that is
	// about to be deleted: the full item under its old seq, plus reason.
	obDeadCopy
	// obRequeue puts dead item old back as a new item seq: the full item.
	obRequeue
)

// obRecord is the decoded body of one outbox log record. Its layout is
//
//	seq     uint64  big-endian
//	old     uint64  big-endian, the dead seq a requeue replaces, else 0
//	enq     int64   big-endian, Unix nanoseconds of the original Enqueue
//	key     uvarint length, bytes
//	stream  uvarint length, bytes
//	reason  uvarint length, bytes
//	payload the rest
type obRecord struct {
	typ     byte
	seq     uint64
	old     uint64
	enq     int64
	key     string
	stream  string
	reason  string
	payload []byte
}

const obFixed = 24

// appendTo appends the record's body to b.
func (r *obRecord) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = binary.BigEndian.AppendUint64(b, r.old)
	b = binary.BigEndian.AppendUint64(b, uint64(r.enq))
	b = binary.AppendUvarint(b, uint64(len(r.key)))
	b = append(b, r.key...)
	b = binary.AppendUvarint(b, uint64(len(r.stream)))
	b = append(b, r.stream...)
	b = binary.AppendUvarint(b, uint64(len(r.reason)))
	b = append(b, r.reason...)
	return append(b, r.payload...)
}

var errObShort = errors.New("record body is cut short")

// obView is a decoded record whose fields alias the body; recovery uses
// it so that reading a million records allocates nothing per record.
type obView struct {
	typ                 byte
	seq, old            uint64
	enq                 int64
	key, stream, reason []byte
	payload             []byte
}

// decodeObView decodes a record body without copying. It checks the shape
// only; the journal has already checked the checksum.
func decodeObView(typ byte, body []byte) (obView, error) {
	if typ < obItem || typ > obRequeue {
		return obView{}, fmt.Errorf("unknown record type %d", typ)
	}
	if len(body) < obFixed {
		return obView{}, errObShort
	}
	v := obView{
		typ: typ,
		seq: binary.BigEndian.Uint64(body),
		old: binary.BigEndian.Uint64(body[8:]),
		enq: int64(binary.BigEndian.Uint64(body[16:])),
	}
	rest := body[obFixed:]
	var fields [3][]byte
	for i := range fields {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return obView{}, errObShort
		}
		fields[i] = rest[k : k+int(n)]
		rest = rest[k+int(n):]
	}
	v.key, v.stream, v.reason = fields[0], fields[1], fields[2]
	if len(rest) > 0 {
		v.payload = rest
	}
	switch {
	case v.seq == 0:
		return obView{}, errors.New("record has sequence number 0")
	case len(v.key) == 0:
		return obView{}, errors.New("record has an empty key")
	case (typ == obRequeue) != (v.old != 0):
		return obView{}, errors.New("record's replaced sequence number does not fit its type")
	case typ == obRequeue && v.old >= v.seq:
		return obView{}, errors.New("requeue record does not move its item forward")
	}
	return v, nil
}

// decodeObRecord decodes a record body into a record of its own. It
// checks the shape only; the journal has already checked the checksum.
func decodeObRecord(typ byte, body []byte) (obRecord, error) {
	v, err := decodeObView(typ, body)
	if err != nil {
		return obRecord{}, err
	}
	return obRecord{
		typ: typ, seq: v.seq, old: v.old, enq: v.enq,
		key: string(v.key), stream: string(v.stream), reason: string(v.reason),
		payload: v.payload,
	}, nil
}

// item returns the Item a record holds.
func (r *obRecord) item() Item {
	return Item{
		Key:      r.key,
		Stream:   r.stream,
		Payload:  r.payload,
		Enqueued: time.Unix(0, r.enq),
		Seq:      r.seq,
	}
}
