package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/klauspost/compress/zstd"
)

// zstdMagic starts every zstd frame. A JSON payload starts with '{' or whitespace, so
// a set member starting with it is a compressed subsegment.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// frame joins payloads as a sequence of uvarint length + bytes, to be compressed as
// one set member.
func frame(payloads [][]byte) []byte {
	n := 0
	for _, p := range payloads {
		n += binary.MaxVarintLen64 + len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range payloads {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

var errBadFrame = errors.New("store: corrupt compressed payload frame")

// unframe splits what frame joined.
func unframe(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errBadFrame
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out, nil
}

// appendPayloads appends to dst the payloads one set member holds. An uncompressed
// member is returned as it is, without a copy: the bytes are only read.
func (b *Buffer) appendPayloads(dst [][]byte, member string) ([][]byte, error) {
	raw := unsafe.Slice(unsafe.StringData(member), len(member))
	if !bytes.HasPrefix(raw, zstdMagic) {
		return append(dst, raw), nil
	}
	b.decoderOnce.Do(func() {
		b.decoder, b.decoderErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	})
	if b.decoderErr != nil {
		return dst, fmt.Errorf("store: zstd decoder: %w", b.decoderErr)
	}
	plain, err := b.decoder.DecodeAll(raw, nil)
	if err != nil {
		return dst, fmt.Errorf("store: decompressing payloads: %w", err)
	}
	payloads, err := unframe(plain)
	if err != nil {
		return dst, err
	}
	return append(dst, payloads...), nil
}
