package kafka

import (
	"errors"
	"fmt"
)

// MaxTopicLength is the longest topic name Kafka accepts: a partition's log
// directory is named <topic>-<partition> and must fit a file name of 255 bytes.
const MaxTopicLength = 249

// ValidateTopic reports, with an error naming topic and the rule it breaks,
// whether topic cannot be a Kafka topic: Kafka's rules are a non-empty name of
// at most 249 characters from [a-zA-Z0-9._-] that is neither "." nor "..".
// Consumer.Subscribe applies it, so that such a name fails at once rather than
// being asked for again and again.
func ValidateTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("kafka: topic name is empty; Kafka topic names have 1 to 249 characters")
	case topic == "." || topic == "..":
		return fmt.Errorf("kafka: topic %q is invalid: Kafka reserves \".\" and \"..\"", topic)
	case len(topic) > MaxTopicLength:
		return fmt.Errorf("kafka: topic %q is invalid: it has %d characters, Kafka allows at most %d", topic, len(topic), MaxTopicLength)
	}
	for i, r := range topic {
		if !legalTopicRune(r) {
			return fmt.Errorf("kafka: topic %q is invalid: it has %q at byte %d; Kafka allows only ASCII letters, digits, '.', '_' and '-'", topic, r, i)
		}
	}
	return nil
}

func legalTopicRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-'
}
