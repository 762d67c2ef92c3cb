package kafka

// Configuration is plain values: NewConsumer and NewProducer take a copy, build
// fills in defaults on it, and from then on it is only read. The copy is shallow:
// Brokers, and pointers inside the copied sarama.Config such as Net.TLS.Config,
// stay shared with the caller.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Assignor names accepted by ConsumerConfig.Assignor.
const (
	AssignorRange             = "range"
	AssignorRoundRobin        = "roundrobin"
	AssignorSticky            = "sticky"
	AssignorCooperativeSticky = "cooperative-sticky"
)

// InitialOffset says where a group starts reading a partition it has no committed
// offset for.
type InitialOffset int

const (
	// OffsetEarliest starts at the oldest retained message. It is the default.
	OffsetEarliest InitialOffset = iota
	// OffsetLatest starts after the newest message.
	OffsetLatest
)

// Defaults and bounds of ConsumerConfig.
const (
	DefaultChannelBufferSize = 1024
	MaxChannelBufferSize     = 1 << 20
)

// saramaConfig returns a copy of given, or sarama's defaults at protocol version 2.8
// when given is nil, after checking the version; owner names the field for errors.
func saramaConfig(given *sarama.Config, owner string) (sarama.Config, error) {
	var sc sarama.Config
	if given != nil {
		sc = *given
	} else {
		sc = *sarama.NewConfig()
		sc.Version = sarama.V2_8_0_0
	}
	if !sc.Version.IsAtLeast(sarama.V0_11_0_0) {
		return sc, fmt.Errorf("kafka: %s.Sarama.Version is %s; set it to at least 0.11 (2.8 or later recommended)", owner, sc.Version)
	}
	return sc, nil
}

// ConsumerConfig configures NewConsumer. Brokers and GroupID are required; every
// other field has a default.
type ConsumerConfig struct {
	// Brokers are the bootstrap brokers, as host:port.
	Brokers []string
	// GroupID is the consumer group to join.
	GroupID string
	// Assignor is the partition assignment strategy: "range" (the default),
	// "roundrobin", "sticky" or "cooperative-sticky". Only cooperative-sticky
	// keeps unaffected partitions running through a rebalance.
	Assignor string
	// InitialOffset applies to partitions the group has never committed.
	InitialOffset InitialOffset
	// InstanceID makes the consumer a static member of the group (KIP-345): a
	// member restarted with the same id within the session timeout gets its
	// partitions back without a rebalance. The cost is that a static member
	// does not leave the group when it closes, so the partitions of one that
	// stops for good wait a whole session timeout for another owner. Each
	// running member needs its own id. Empty: a dynamic member. It needs
	// Sarama.Version 2.3 or later.
	InstanceID string
	// Sarama carries client settings such as TLS, SASL, the protocol version and
	// timeouts. It is copied; nil means sarama.NewConfig() with Version 2.8. The
	// consumer overrides what it must own: the assignor, the initial offset,
	// manual commits, error reporting and Metadata.AllowAutoTopicCreation, which
	// is always off: a consumer that asks for a mistyped topic's metadata must not
	// create it on a broker with auto.create.topics.enable.
	Sarama *sarama.Config
	// ChannelBufferSize is how many messages may wait between the partition
	// readers and Poll. Readers block when it is full. Default 1024, at most 1<<20.
	ChannelBufferSize int
	// RevokeTimeout bounds how long a revoked partition waits for the polling
	// goroutine to handle OnRevoke before it is released anyway. It must be shorter
	// than Sarama.Consumer.Group.Rebalance.Timeout; the default is half of it.
	RevokeTimeout time.Duration
	// MissingTopicLogInterval is how often the wait for subscribed topics that do
	// not exist yet is logged (at Warn, naming them): once when the wait begins,
	// then at most once per interval until they all exist. The consumer retries
	// every second meanwhile. Default 10 s.
	MissingTopicLogInterval time.Duration
	// Logger receives the consumer's diagnostics. Default: the logger of the
	// processor it runs in (see Consumer.Instrument), else zap.NewNop().
	Logger *zap.Logger
}

// DefaultMissingTopicLogInterval is the default of
// ConsumerConfig.MissingTopicLogInterval.
const DefaultMissingTopicLogInterval = 10 * time.Second

// build validates cfg and returns it with defaults filled in, plus the sarama
// configuration to run with.
func (cfg ConsumerConfig) build() (ConsumerConfig, *sarama.Config, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, nil, errors.New("kafka: ConsumerConfig.Brokers is empty; give at least one host:port")
	}
	if cfg.GroupID == "" {
		return cfg, nil, errors.New("kafka: ConsumerConfig.GroupID is empty; name the consumer group to join")
	}
	sc, err := saramaConfig(cfg.Sarama, "ConsumerConfig")
	if err != nil {
		return cfg, nil, err
	}
	if cfg.Assignor == "" {
		cfg.Assignor = AssignorRange
	}
	var strategy sarama.BalanceStrategy
	switch strings.ToLower(cfg.Assignor) {
	case AssignorRange:
		strategy = sarama.NewBalanceStrategyRange()
	case AssignorRoundRobin:
		strategy = sarama.NewBalanceStrategyRoundRobin()
	case AssignorSticky:
		strategy = sarama.NewBalanceStrategySticky()
	case AssignorCooperativeSticky:
		strategy = sarama.NewBalanceStrategyCooperativeSticky()
	default:
		return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.Assignor %q is unknown; use %q, %q, %q or %q",
			cfg.Assignor, AssignorRange, AssignorRoundRobin, AssignorSticky, AssignorCooperativeSticky)
	}
	sc.Consumer.Group.Rebalance.Strategy = nil
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	switch cfg.InitialOffset {
	case OffsetEarliest:
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	case OffsetLatest:
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	default:
		return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.InitialOffset %d is unknown; use OffsetEarliest or OffsetLatest", cfg.InitialOffset)
	}
	if cfg.InstanceID != "" {
		if id := sc.Consumer.Group.InstanceId; id != "" && id != cfg.InstanceID {
			return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.InstanceID is %q but Sarama.Consumer.Group.InstanceId is %q; set one of them", cfg.InstanceID, id)
		}
		if !sc.Version.IsAtLeast(sarama.V2_3_0_0) {
			return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.InstanceID needs Sarama.Version 2.3 or later; it is %s", sc.Version)
		}
		sc.Consumer.Group.InstanceId = cfg.InstanceID
	}
	// Offsets move only through Consumer.Commit, after the processor says the work
	// is done; sarama's periodic commit would commit what was merely read.
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Return.Errors = true
	// The group's metadata requests name the subscribed topics; with this on, a
	// broker that allows auto-creation would create a mistyped topic and the
	// consumer would wait on it silently for ever.
	sc.Metadata.AllowAutoTopicCreation = false
	if err := sc.Validate(); err != nil {
		return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.Sarama is invalid: %w", err)
	}

	switch {
	case cfg.ChannelBufferSize == 0:
		cfg.ChannelBufferSize = DefaultChannelBufferSize
	case cfg.ChannelBufferSize < 0 || cfg.ChannelBufferSize > MaxChannelBufferSize:
		return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.ChannelBufferSize is %d; use 1 to %d (0 = %d)",
			cfg.ChannelBufferSize, MaxChannelBufferSize, DefaultChannelBufferSize)
	}
	rebalance := sc.Consumer.Group.Rebalance.Timeout
	switch {
	case cfg.RevokeTimeout == 0:
		cfg.RevokeTimeout = rebalance / 2
	case cfg.RevokeTimeout < 0 || cfg.RevokeTimeout >= rebalance:
		return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.RevokeTimeout is %s; it must be positive and shorter than Sarama.Consumer.Group.Rebalance.Timeout (%s), or the group expels the member",
			cfg.RevokeTimeout, rebalance)
	}
	switch {
	case cfg.MissingTopicLogInterval == 0:
		cfg.MissingTopicLogInterval = DefaultMissingTopicLogInterval
	case cfg.MissingTopicLogInterval < 0:
		return cfg, nil, fmt.Errorf("kafka: ConsumerConfig.MissingTopicLogInterval is %s; it must be positive (0 = %s)",
			cfg.MissingTopicLogInterval, DefaultMissingTopicLogInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg, &sc, nil
}
