package processor

import (
	"errors"
	"fmt"
)

// ErrMessageRejected is returned by Strategy.Submit when the strategy cannot take
// the message now. The caller keeps the message and offers it again later.
var ErrMessageRejected = errors.New("processor: message rejected (backpressure)")

// InvalidMessageError reports a message that can never be processed. Strategies
// return it from Submit or Poll; the processor sends the message to the dead-letter
// queue, if one is configured, and commits past it.
type InvalidMessageError struct {
	Partition Partition
	Offset    int64
	// Reason says why the message is invalid, for people and for the DLQ header.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *InvalidMessageError) Error() string {
	return fmt.Sprintf("processor: invalid message at %s offset %d: %s", e.Partition, e.Offset, e.Reason)
}

func (e *InvalidMessageError) Unwrap() error { return e.Err }

// Invalid returns an *InvalidMessageError for m, which must stand for one broker
// message (see Message.Origin). The reason is err's text. For a message without an
// origin it returns an ordinary error wrapping err, which stops the processor:
// an invalid batch cannot be dead-lettered message by message.
func Invalid[T any](m Message[T], err error) error {
	pos, ok := m.Origin()
	if !ok {
		return fmt.Errorf("processor: invalid message without a broker origin (committable %s): %w", m.Committable, err)
	}
	return &InvalidMessageError{Partition: pos.Partition, Offset: pos.Offset, Reason: err.Error(), Err: err}
}

// AsInvalid reports whether err is or wraps an *InvalidMessageError and returns it.
func AsInvalid(err error) (*InvalidMessageError, bool) {
	var inv *InvalidMessageError
	ok := errors.As(err, &inv)
	return inv, ok
}
