package kafkatest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// Environment variables that name the real broker's SASL_SSL listener, which
// scripts/kafka-start opens beside the plaintext one.
const (
	// EnvSASLSSLBrokers is the listener as a comma-separated host:port list.
	EnvSASLSSLBrokers = "CREEK_KAFKA_SASL_SSL_BROKERS"
	// EnvSASLUser and EnvSASLPassword are the SASL/PLAIN credentials it accepts.
	EnvSASLUser     = "CREEK_KAFKA_SASL_USER"
	EnvSASLPassword = "CREEK_KAFKA_SASL_PASSWORD"
	// EnvTLSCA is the PEM file of the certificate the listener presents.
	EnvTLSCA = "CREEK_KAFKA_TLS_CA"
)

// Secured is a listener that takes only SASL/PLAIN over TLS.
type Secured struct {
	Brokers  []string
	TLS      *tls.Config
	User     string
	Password string
}

// RealSecured returns the real broker's SASL_SSL listener. Without one it skips the
// test, or fails it when CREEK_REQUIRE_REAL=1.
func RealSecured(t testing.TB) Secured {
	t.Helper()
	brokers := brokerList(os.Getenv(EnvSASLSSLBrokers))
	if len(brokers) == 0 {
		if os.Getenv(EnvRequireReal) == "1" {
			t.Fatalf("kafkatest: %s=1 but %s is not set; start a broker with scripts/kafka-start and source scripts/.run/kafka.env", EnvRequireReal, EnvSASLSSLBrokers)
		}
		t.Skipf("kafkatest: %s is not set: no real SASL_SSL listener (scripts/kafka-start opens one)", EnvSASLSSLBrokers)
	}
	pem, err := os.ReadFile(os.Getenv(EnvTLSCA))
	if err != nil {
		t.Fatalf("kafkatest: reading the listener's certificate (%s): %v", EnvTLSCA, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("kafkatest: %s holds no PEM certificate", os.Getenv(EnvTLSCA))
	}
	return Secured{
		Brokers:  brokers,
		TLS:      &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		User:     os.Getenv(EnvSASLUser),
		Password: os.Getenv(EnvSASLPassword),
	}
}

// SaramaConfig returns SaramaConfig with TLS and SASL/PLAIN set for the listener.
func (s Secured) SaramaConfig() *sarama.Config {
	sc := SaramaConfig()
	sc.Net.TLS.Enable = true
	sc.Net.TLS.Config = s.TLS
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	sc.Net.SASL.User, sc.Net.SASL.Password = s.User, s.Password
	return sc
}

// Mechanism returns the listener's SASL/PLAIN credentials for franz-go.
func (s Secured) Mechanism() sasl.Mechanism {
	return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
}
