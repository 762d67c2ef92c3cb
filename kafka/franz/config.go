package franz

// Configuration is plain values: NewConsumer takes a copy, build fills in defaults
// on it, and from then on it is only read, by every goroutine of the consumer. The
// copy is shallow: Brokers, TLS, SASL and ClientOptions stay shared with the
// caller, who must not change them afterwards.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
)

// Assignor names accepted by ConsumerConfig.Assignor; they are package kafka's.
const (
	AssignorRange             = kafka.AssignorRange
	AssignorRoundRobin        = kafka.AssignorRoundRobin
	AssignorSticky            = kafka.AssignorSticky
	AssignorCooperativeSticky = kafka.AssignorCooperativeSticky
)

// InitialOffset says where a group starts reading a partition it has no committed
// offset for; it is package kafka's type.
type InitialOffset = kafka.InitialOffset

// The initial offsets, as in package kafka.
const (
	// OffsetEarliest starts at the oldest retained message. It is the default.
	OffsetEarliest = kafka.OffsetEarliest
	// OffsetLatest starts after the newest message.
	OffsetLatest = kafka.OffsetLatest
)

// Defaults of ConsumerConfig.
const (
	DefaultSessionTimeout    = 45 * time.Second
	DefaultRebalanceTimeout  = 60 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultFetchTimeout      = 10 * time.Second
	DefaultCloseTimeout      = 10 * time.Second
)

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
	// InstanceID makes the consumer a static member of the group (KIP-345), as
	// kafka.ConsumerConfig.InstanceID does: a member restarted with the same id
	// within SessionTimeout gets its partitions back without a rebalance, and one
	// that stops for good holds its partitions for a whole SessionTimeout, since
	// a static member does not leave the group when it closes. Empty: a dynamic
	// member.
	InstanceID string
	// ClientID is the client id sent to the brokers. Default: kgo's ("kgo").
	ClientID string
	// TLS, when set, makes every connection use TLS with this configuration.
	TLS *tls.Config
	// SASL, when set, authenticates every connection with this mechanism.
	SASL sasl.Mechanism
	// SessionTimeout is how long the group waits for a heartbeat before it
	// expels the member. Default 45 s.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the group waits for every member to rejoin in
	// a rebalance. Default 60 s.
	RebalanceTimeout time.Duration
	// HeartbeatInterval spaces the member's heartbeats; it must be shorter than
	// SessionTimeout. Default 3 s.
	HeartbeatInterval time.Duration
	// RevokeTimeout bounds how long a revoked partition waits for the polling
	// goroutine to handle OnRevoke before it is released anyway. It must be
	// shorter than RebalanceTimeout; the default is half of it.
	RevokeTimeout time.Duration
	// FetchTimeout bounds Fetch on top of the context it is given. Default 10 s.
	FetchTimeout time.Duration
	// CloseTimeout bounds leaving the group in Close. Default 10 s.
	CloseTimeout time.Duration
	// MaxPollRecords bounds the records one poll of kgo returns; the reader polls
	// while the records waiting for the processor are below 16 MiB. The default,
	// 0, takes every record kgo has buffered: kgo sends a partition's next fetch
	// only once its last one is polled out, so a bound holds the next fetch back.
	MaxPollRecords int
	// MissingTopicLogInterval is how often the wait for subscribed topics that do
	// not exist yet is logged (at Warn, naming them): once when the wait begins,
	// then at most once per interval until they all exist. The consumer looks
	// every second meanwhile. Default 10 s (kafka.DefaultMissingTopicLogInterval).
	MissingTopicLogInterval time.Duration
	// Logger receives the consumer's and kgo's diagnostics. Default: the logger of
	// the processor it runs in (see Consumer.Instrument), else zap.NewNop().
	Logger *zap.Logger
	// ClientOptions are further kgo options, such as fetch sizes. They are applied
	// first: the consumer's own options (group, balancer, commits, callbacks and
	// the fields above) override them.
	ClientOptions []kgo.Opt
}

// build validates cfg and returns it with defaults filled in.
func (cfg ConsumerConfig) build() (ConsumerConfig, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("franz: ConsumerConfig.Brokers is empty; give at least one host:port")
	}
	if cfg.GroupID == "" {
		return cfg, errors.New("franz: ConsumerConfig.GroupID is empty; name the consumer group to join")
	}
	if cfg.Assignor == "" {
		cfg.Assignor = AssignorRange
	}
	cfg.Assignor = strings.ToLower(cfg.Assignor)
	if _, err := balancer(cfg.Assignor); err != nil {
		return cfg, err
	}
	if cfg.InitialOffset != OffsetEarliest && cfg.InitialOffset != OffsetLatest {
		return cfg, fmt.Errorf("franz: ConsumerConfig.InitialOffset %d is unknown; use OffsetEarliest or OffsetLatest", cfg.InitialOffset)
	}
	var err error
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"SessionTimeout", &cfg.SessionTimeout, DefaultSessionTimeout},
		{"RebalanceTimeout", &cfg.RebalanceTimeout, DefaultRebalanceTimeout},
		{"HeartbeatInterval", &cfg.HeartbeatInterval, DefaultHeartbeatInterval},
		{"FetchTimeout", &cfg.FetchTimeout, DefaultFetchTimeout},
		{"CloseTimeout", &cfg.CloseTimeout, DefaultCloseTimeout},
		{"MissingTopicLogInterval", &cfg.MissingTopicLogInterval, kafka.DefaultMissingTopicLogInterval},
	}
	for _, d := range durations {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			err = errors.Join(err, fmt.Errorf("franz: ConsumerConfig.%s is %s; it must be positive (0 = %s)", d.name, *d.v, d.def))
		}
	}
	if err != nil {
		return cfg, err
	}
	if cfg.HeartbeatInterval >= cfg.SessionTimeout {
		return cfg, fmt.Errorf("franz: ConsumerConfig.HeartbeatInterval (%s) must be shorter than SessionTimeout (%s)", cfg.HeartbeatInterval, cfg.SessionTimeout)
	}
	switch {
	case cfg.RevokeTimeout == 0:
		cfg.RevokeTimeout = cfg.RebalanceTimeout / 2
	case cfg.RevokeTimeout < 0 || cfg.RevokeTimeout >= cfg.RebalanceTimeout:
		return cfg, fmt.Errorf("franz: ConsumerConfig.RevokeTimeout is %s; it must be positive and shorter than RebalanceTimeout (%s), or the group expels the member",
			cfg.RevokeTimeout, cfg.RebalanceTimeout)
	}
	if cfg.MaxPollRecords < 0 {
		return cfg, fmt.Errorf("franz: ConsumerConfig.MaxPollRecords is %d; it must be positive, or 0 for every record kgo has buffered", cfg.MaxPollRecords)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg, nil
}

// balancer returns kgo's balancer for an assignor name.
func balancer(name string) (kgo.GroupBalancer, error) {
	switch name {
	case AssignorRange:
		return kgo.RangeBalancer(), nil
	case AssignorRoundRobin:
		return kgo.RoundRobinBalancer(), nil
	case AssignorSticky:
		return kgo.StickyBalancer(), nil
	case AssignorCooperativeSticky:
		return kgo.CooperativeStickyBalancer(), nil
	}
	return nil, fmt.Errorf("franz: ConsumerConfig.Assignor %q is unknown; use %q, %q, %q or %q",
		name, AssignorRange, AssignorRoundRobin, AssignorSticky, AssignorCooperativeSticky)
}

// clientOpts returns the options every client of the consumer shares: the given
// ones first, then connection settings.
func clientOpts(extra []kgo.Opt, brokers []string, clientID string, tlsCfg *tls.Config, mech sasl.Mechanism, log *zap.Logger) []kgo.Opt {
	opts := append([]kgo.Opt(nil), extra...)
	opts = append(opts, kgo.SeedBrokers(brokers...), kgo.WithLogger(zapLogger{log}))
	if clientID != "" {
		opts = append(opts, kgo.ClientID(clientID))
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts
}

// resetOffset is where kgo starts a partition without a committed offset.
func (cfg ConsumerConfig) resetOffset() kgo.Offset {
	if cfg.InitialOffset == OffsetLatest {
		return kgo.NewOffset().AtEnd()
	}
	return kgo.NewOffset().AtStart()
}
