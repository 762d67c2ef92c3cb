// Package docs holds the tests that keep docs/configuration.md true to the code:
// every field of every configuration struct in its table, with its type, and the
// TLS and SASL examples identical to code that runs.
package docs

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments"
	"github.com/creekstream/creek/segments/store"
)

// configurationDoc is the doc the tests check, as the test (run in docs/) opens
// it; docName is how the messages name it.
const (
	configurationDoc = "configuration.md"
	docName          = "docs/configuration.md"
)

// T stands for the type parameter of the generic configurations, so that their
// field types read as the doc writes them (func(T) int).
type T struct{}

// documented are the structs docs/configuration.md has a table for, by the
// heading of the table's section.
var documented = map[string]reflect.Type{
	"kafka.ConsumerConfig":    reflect.TypeFor[kafka.ConsumerConfig](),
	"kafka.ProducerConfig":    reflect.TypeFor[kafka.ProducerConfig](),
	"franz.ConsumerConfig":    reflect.TypeFor[franz.ConsumerConfig](),
	"franz.ProducerConfig":    reflect.TypeFor[franz.ProducerConfig](),
	"franz.TxnConfig":         reflect.TypeFor[franz.TxnConfig](),
	"processor.Config[T]":     reflect.TypeFor[processor.Config[T]](),
	"processor.CommitPolicy":  reflect.TypeFor[processor.CommitPolicy](),
	"processor.StuckConfig":   reflect.TypeFor[processor.StuckConfig](),
	"processor.DLQPolicy[T]":  reflect.TypeFor[processor.DLQPolicy[T]](),
	"segments.ConsumerConfig": reflect.TypeFor[segments.ConsumerConfig](),
	"segments.FactoryConfig":  reflect.TypeFor[segments.FactoryConfig](),
	"segments.FlusherConfig":  reflect.TypeFor[segments.FlusherConfig](),
	"store.Config":            reflect.TypeFor[store.Config](),
}

// docType is how the doc writes a field's type: package-qualified by name, as
// reflect does, with T for the type parameter.
func docType(t reflect.Type) string {
	s := strings.ReplaceAll(t.String(), "github.com/creekstream/creek/", "")
	return strings.ReplaceAll(s, "docs.T", "T")
}

// row is one line of a field table: the field's name and its type, as written.
type row struct {
	field, typ string
	line       int
}

// tables returns the rows of the field table under each "### `name`" heading of
// the doc, by name.
func tables(t *testing.T) map[string][]row {
	t.Helper()
	f, err := os.Open(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[string][]row)
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			section = ""
			if name, ok := strings.CutPrefix(line, "### `"); ok && strings.HasSuffix(name, "`") {
				section = strings.TrimSuffix(name, "`")
				if _, dup := out[section]; dup {
					t.Errorf("%s:%d: a second section for %s", docName, n, section)
				}
				out[section] = nil
			}
			continue
		}
		if section == "" || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 4 {
			t.Errorf("%s:%d: a row of %s's table has %d columns, want field, type, default, what it does", docName, n, section, len(cells))
			continue
		}
		unquote := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		out[section] = append(out[section], row{field: unquote(cells[0]), typ: unquote(cells[1]), line: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConfigurationTablesComplete fails when a configuration struct has an
// exported field its table in docs/configuration.md lacks, when the table names a
// field the struct does not have, or when it gives a field the wrong type.
func TestConfigurationTablesComplete(t *testing.T) {
	doc := tables(t)
	for _, name := range slices.Sorted(maps.Keys(documented)) {
		typ := documented[name]
		rows, ok := doc[name]
		if !ok {
			t.Errorf("%s has no section \"### `%s`\" with the table of %s's fields", docName, name, typ)
			continue
		}
		inDoc := make(map[string]row, len(rows))
		for _, r := range rows {
			if _, dup := inDoc[r.field]; dup {
				t.Errorf("%s:%d: %s's table lists %s twice", docName, r.line, name, r.field)
			}
			inDoc[r.field] = r
		}
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			r, ok := inDoc[f.Name]
			if !ok {
				t.Errorf("%s: field %s of %s is missing from its table; add a row for it", docName, f.Name, name)
				continue
			}
			delete(inDoc, f.Name)
			if want := docType(f.Type); r.typ != want {
				t.Errorf("%s:%d: field %s of %s has type %s, the table says %s", docName, r.line, f.Name, name, want, r.typ)
			}
		}
		for _, f := range slices.Sorted(maps.Keys(inDoc)) {
			r := inDoc[f]
			t.Errorf("%s:%d: %s has no exported field %s; remove the row or rename it", docName, r.line, name, r.field)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(doc)) {
		if _, ok := documented[name]; !ok {
			t.Errorf("%s has a section for %s, which this test does not check; add it to documented", docName, name)
		}
	}
}

// TestConfigurationShowsSnippets fails unless the ```go blocks of
// docs/configuration.md, in order, are configuration_snippets_test.go from its
// import declaration on.
func TestConfigurationShowsSnippets(t *testing.T) {
	md, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("configuration_snippets_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	rest := string(md)
	for {
		_, after, ok := strings.Cut(rest, "\n```go\n")
		if !ok {
			break
		}
		block, tail, ok := strings.Cut(after, "\n```\n")
		if !ok {
			t.Fatalf("%s: a ```go block is not closed", docName)
		}
		blocks = append(blocks, block+"\n")
		rest = tail
	}
	shown := strings.Join(blocks, "\n")
	i := strings.Index(string(src), "\nimport (")
	if i < 0 {
		t.Fatal("configuration_snippets_test.go has no import declaration")
	}
	code := string(src[i+1:])
	if shown == code {
		return
	}
	shownLines, codeLines := strings.Split(shown, "\n"), strings.Split(code, "\n")
	for n := 0; n < max(len(shownLines), len(codeLines)); n++ {
		var s, c string
		if n < len(shownLines) {
			s = shownLines[n]
		}
		if n < len(codeLines) {
			c = codeLines[n]
		}
		if s != c {
			t.Fatalf("the Go code of %s differs from configuration_snippets_test.go (from its import declaration on) at line %d of the code:\n doc:  %q\n code: %q\nchange both: the doc shows the file, block by block, in order",
				docName, n+1, s, c)
		}
	}
}

// TestTLSAndSASL runs the doc's TLS and SASL code against an in-process broker
// that requires TLS with a client certificate and SASL, for both mechanisms on
// both backends: each pair of clients writes a message and reads it back. It also
// checks that the broker refuses a wrong password and a client without a
// certificate, so that a pass means the settings were used.
func TestTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	serverTLS := writeCertificates(t, dir)
	const (
		plainUser, plainPass = "alice", "alice-secret"
		scramUser, scramPass = "bob", "bob-secret"
	)
	topics := []string{"sarama-plain", "sarama-scram", "franz-plain", "franz-scram"}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(serverTLS),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", plainUser, plainPass),
		kfake.Superuser("SCRAM-SHA-512", scramUser, scramPass),
		kfake.SeedTopics(1, topics...),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	tlsCfg, err := clientTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sarama-plain", func(t *testing.T) {
		roundTripSarama(t, brokers, "sarama-plain", saramaPlain(tlsCfg, plainUser, plainPass))
	})
	t.Run("sarama-scram", func(t *testing.T) {
		roundTripSarama(t, brokers, "sarama-scram", saramaSCRAM(tlsCfg, scramUser, scramPass))
	})
	t.Run("franz-plain", func(t *testing.T) {
		roundTripFranz(t, brokers, "franz-plain", tlsCfg, franzPlain(plainUser, plainPass))
	})
	t.Run("franz-scram", func(t *testing.T) {
		roundTripFranz(t, brokers, "franz-scram", tlsCfg, franzSCRAM(scramUser, scramPass))
	})

	refused := func(t *testing.T, sc *sarama.Config) {
		sc.Metadata.Retry.Max = 0
		consumer, producer, err := saramaClients(brokers, "refused", sc)
		if err == nil {
			closeAll(t, consumer, producer)
			t.Fatal("the broker accepted the client")
		}
		t.Logf("refused as it should be: %v", err)
	}
	t.Run("wrong-password", func(t *testing.T) {
		refused(t, saramaSCRAM(tlsCfg, scramUser, "not-"+scramPass))
	})
	t.Run("no-client-certificate", func(t *testing.T) {
		noCert := tlsCfg.Clone()
		noCert.Certificates = nil
		refused(t, saramaPlain(noCert, plainUser, plainPass))
	})
}

// roundTripSarama writes a message to topic and reads it back with the sarama
// clients saramaClients builds from sc.
func roundTripSarama(t *testing.T, brokers []string, topic string, sc *sarama.Config) {
	consumer, producer, err := saramaClients(brokers, topic, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, consumer, producer)
	roundTrip(t, topic, consumer, producer)
}

// roundTripFranz is roundTripSarama for the franz-go clients.
func roundTripFranz(t *testing.T, brokers []string, topic string, tlsCfg *tls.Config, mech sasl.Mechanism) {
	consumer, producer, err := franzClients(brokers, topic, tlsCfg, mech)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, consumer, producer)
	roundTrip(t, topic, consumer, producer)
}

type producer interface {
	kafka.Writer
	Close(ctx context.Context) error
}

func closeAll(t *testing.T, c processor.Consumer[processor.KafkaPayload], p producer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := errors.Join(p.Close(ctx), c.Close()); err != nil {
		t.Error(err)
	}
}

func roundTrip(t *testing.T, topic string, c processor.Consumer[processor.KafkaPayload], p producer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := "over TLS and SASL: " + topic
	if _, err := p.Produce(ctx, topic, processor.KafkaPayload{Value: []byte(want)}).Wait(ctx); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatal(err)
	}
	for {
		msg, ok, err := c.Poll(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if ok {
			if got := string(msg.Payload.Value); got != want {
				t.Fatalf("read %q, want %q", got, want)
			}
			return
		}
	}
}

// writeCertificates writes a CA (ca.pem) and a client certificate it signed
// (client.pem, client-key.pem) to dir, and returns the broker's TLS configuration:
// a certificate for 127.0.0.1 signed by the same CA, and client certificates
// required and verified against it.
func writeCertificates(t *testing.T, dir string) *tls.Config {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	template := func(name string) *x509.Certificate {
		serial++
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
	}
	caKey := newKey()
	caTmpl := template("creek test CA")
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(tmpl *x509.Certificate) (der []byte, key *ecdsa.PrivateKey) {
		key = newKey()
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverTmpl := template("127.0.0.1")
	serverTmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	serverTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverDER, serverKey := issue(serverTmpl)
	clientTmpl := template("creek client")
	clientTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	clientDER, clientKey := issue(clientTmpl)

	write := func(name, blockType string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clientKeyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("client.pem", "CERTIFICATE", clientDER)
	write("client-key.pem", "EC PRIVATE KEY", clientKeyDER)

	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientCAs:    clientCAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}
