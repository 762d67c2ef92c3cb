package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Codec turns a state value into the bytes that the store and the changelog hold,
// and back.
type Codec[V any] interface {
	Encode(V) ([]byte, error)
	Decode([]byte) (V, error)
}

// Int64 stores an int64 as eight big-endian bytes; Count uses it.
type Int64 struct{}

// Encode implements Codec.
func (Int64) Encode(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(v)), nil
}

// Decode implements Codec.
func (Int64) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("state: int64 codec: value has %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// Bytes stores a byte slice as it is.
type Bytes struct{}

// Encode implements Codec.
func (Bytes) Encode(v []byte) ([]byte, error) { return v, nil }

// Decode implements Codec. The slice is the caller's to keep.
func (Bytes) Decode(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }

// JSON stores a value as JSON.
type JSON[V any] struct{}

// Encode implements Codec.
func (JSON[V]) Encode(v V) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("state: json codec: %w", err)
	}
	return b, nil
}

// Decode implements Codec.
func (JSON[V]) Decode(b []byte) (V, error) {
	var v V
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("state: json codec: %w", err)
	}
	return v, nil
}

var errNilValue = errors.New("codec encoded the value as nil, which the changelog reads as a deletion")
