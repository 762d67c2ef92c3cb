// docs/configuration.md shows this file from its import declaration on, block by
// block; TestConfigurationShowsSnippets fails when the two differ, and
// TestTLSAndSASL runs every function here against a broker that requires TLS
// and SASL.

package docs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
)

// clientTLS trusts the CA that signed the brokers' certificates (caFile) and
// presents the client certificate certFile with its key keyFile, all PEM files.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// saramaPlain returns sarama settings for TLS and SASL/PLAIN.
func saramaPlain(tlsCfg *tls.Config, user, password string) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Net.TLS.Enable = true
	sc.Net.TLS.Config = tlsCfg
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	sc.Net.SASL.User = user
	sc.Net.SASL.Password = password
	return sc
}

// saramaSCRAM returns sarama settings for TLS and SASL/SCRAM-SHA-512.
func saramaSCRAM(tlsCfg *tls.Config, user, password string) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Net.TLS.Enable = true
	sc.Net.TLS.Config = tlsCfg
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
	sc.Net.SASL.User = user
	sc.Net.SASL.Password = password
	sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return new(scramSHA512) }
	return sc
}

// scramSHA512 is a sarama.SCRAMClient built on franz-go's scram package.
type scramSHA512 struct {
	session sasl.Session
	first   string // the client's first message, until Step returns it
	done    bool
}

func (c *scramSHA512) Begin(user, password, authzID string) error {
	auth := scram.Auth{User: user, Pass: password, Zid: authzID}
	session, first, err := auth.AsSha512Mechanism().Authenticate(context.Background(), "")
	c.session, c.first, c.done = session, string(first), false
	return err
}

func (c *scramSHA512) Step(challenge string) (string, error) {
	if c.first != "" {
		first := c.first
		c.first = ""
		return first, nil
	}
	done, response, err := c.session.Challenge([]byte(challenge))
	c.done = done
	return string(response), err
}

func (c *scramSHA512) Done() bool { return c.done }

// saramaClients builds the sarama backend's consumer and producer with the same
// settings; each takes a copy of sc.
func saramaClients(brokers []string, group string, sc *sarama.Config) (*kafka.Consumer, *kafka.Producer, error) {
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: group, Sarama: sc})
	if err != nil {
		return nil, nil, err
	}
	producer, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Sarama: sc})
	if err != nil {
		return nil, nil, errors.Join(err, consumer.Close())
	}
	return consumer, producer, nil
}

// franzPlain and franzSCRAM are the franz-go backend's SASL mechanisms.
func franzPlain(user, password string) sasl.Mechanism {
	return plain.Auth{User: user, Pass: password}.AsMechanism()
}

func franzSCRAM(user, password string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
}

// franzClients builds the franz-go backend's consumer and producer with TLS and
// the SASL mechanism mech.
func franzClients(brokers []string, group string, tlsCfg *tls.Config, mech sasl.Mechanism) (*franz.Consumer, *franz.Producer, error) {
	consumer, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: brokers, GroupID: group, TLS: tlsCfg, SASL: mech})
	if err != nil {
		return nil, nil, err
	}
	producer, err := franz.NewProducer(franz.ProducerConfig{Brokers: brokers, TLS: tlsCfg, SASL: mech})
	if err != nil {
		return nil, nil, errors.Join(err, consumer.Close())
	}
	return consumer, producer, nil
}
