// Package streamtest is the streaming suite: the same tests run against the
// embedded kfake broker (always) and a real Apache Kafka broker (build tag
// integration, started by scripts/kafka-local in .ci/run). Consumers run as
// real `triage consumer` processes so they can be SIGKILLed.
package streamtest

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/encoder"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/minilm"
	"github.com/triage-ml/triage/trainer"
)

// Backend is a Kafka broker the suite runs against.
type Backend interface {
	Name() string
	Brokers() []string
	// RestartBroker stops the broker and starts it again on the same
	// address with the same data.
	RestartBroker(t *testing.T)
}

var (
	binary   string // built triage binary
	modelDir string // small support-intent model trained for the suite
	// modelDir2 is the same data trained differently: the version the swap
	// test promotes.
	modelDir2 string
	// hybridDir is the same data trained as a hybrid model (n-grams +
	// MiniLM encoder), so the consumer is also run on a two-stage bundle.
	hybridDir string
	ortLib    string
)

// topic words give the suite's model texts with known labels.
var topicWords = map[string][]string{
	"card_arrival":  {"card", "arrive", "delivery", "waiting", "post", "weeks"},
	"refund":        {"refund", "money", "back", "returned", "merchant", "pending"},
	"exchange_rate": {"rate", "exchange", "currency", "euro", "dollar", "fee"},
	"lost_card":     {"lost", "stolen", "missing", "block", "freeze", "thief"},
}

var knownTexts = map[string]string{
	"my card has not arrived, still waiting for the delivery": "card_arrival",
	"I want my refund, the merchant returned the money":       "refund",
	"what exchange rate do you use for euro to dollar":        "exchange_rate",
	"my card was stolen please block and freeze it":           "lost_card",
}

func TestMain(m *testing.M) {
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	dir, err := os.MkdirTemp("", "triage-streamtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		return 1
	}
	binary = filepath.Join(dir, "triage")
	build := exec.Command("go", "build", "-o", binary, "./cmd/triage")
	build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build triage:", err)
		return 1
	}
	if ortLib, err = inference.FindORTLibrary(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if modelDir, err = trainModel(dir, nil); err != nil {
		fmt.Fprintln(os.Stderr, "train suite model:", err)
		return 1
	}
	if modelDir2, err = trainModelAs(dir, "support-v2", 2, nil); err != nil {
		fmt.Fprintln(os.Stderr, "train suite model v2:", err)
		return 1
	}
	if hybridDir, err = trainHybrid(dir); err != nil {
		fmt.Fprintln(os.Stderr, "train suite hybrid model (run scripts/fetch-minilm.sh; make test does):", err)
		return 1
	}
	return m.Run()
}

// trainHybrid converts the MiniLM checkpoint and trains the suite's data as
// a hybrid model.
func trainHybrid(dir string) (string, error) {
	encDir := filepath.Join(dir, "encoder")
	man, err := encoder.Convert(minilm.Checkpoint(), encDir, encoder.ConvertOptions{})
	if err != nil {
		return "", err
	}
	enc, err := inference.OpenEncoderDir(encDir, encoderdir.VariantFP32, inference.ModelOptions{ORTLib: ortLib})
	if err != nil {
		return "", err
	}
	defer enc.Close()
	return trainModel(dir, &trainer.EncoderSource{Embedder: enc, Dir: encDir, Variant: encoderdir.VariantFP32, Manifest: man})
}

func trainModel(dir string, enc *trainer.EncoderSource) (string, error) {
	return trainModelAs(dir, "support", 1, enc)
}

// trainModelAs trains the suite's data into dir/name with the given seed.
func trainModelAs(dir, name string, seed uint64, enc *trainer.EncoderSource) (string, error) {
	rng := rand.New(rand.NewPCG(3, 4))
	filler := []string{"my", "the", "please", "why", "is", "not", "help", "I", "need"}
	var b strings.Builder
	b.WriteString("text,label\n")
	labels := []string{"card_arrival", "refund", "exchange_rate", "lost_card"}
	for i := range 800 {
		l := labels[i%4]
		var ws []string
		for range 8 {
			if rng.IntN(3) > 0 {
				ws = append(ws, topicWords[l][rng.IntN(6)])
			} else {
				ws = append(ws, filler[rng.IntN(len(filler))])
			}
		}
		fmt.Fprintf(&b, "%s,%s\n", strings.Join(ws, " "), l)
	}
	data := filepath.Join(dir, "train.csv")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	opts := trainer.Options{DataPath: data, OutDir: out, Name: "support", Seed: seed, LearningRates: []float64{0.2}, L2s: []float64{0}, MaxEpochs: 6}
	if enc != nil {
		out = filepath.Join(dir, name+"-hybrid")
		opts.OutDir, opts.Encoder, opts.EncoderScales = out, enc, []float64{2}
	}
	_, err := trainer.Train(context.Background(), opts)
	return out, err
}

// topics names one test's topics uniquely so tests never see each other.
type topics struct {
	in, out, dlq, group string
	model               string // bundle the consumer serves; "" = modelDir
}

func newTopics(t *testing.T, b Backend, partitions int32) topics {
	t.Helper()
	suffix := fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%1e9)
	tp := topics{in: "in-" + suffix, out: "out-" + suffix, dlq: "dlq-" + suffix, group: "g-" + suffix}
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, 1, nil, tp.in, tp.out, tp.dlq)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range resp {
		if r.Err != nil {
			t.Fatalf("create topic %s: %v", r.Topic, r.Err)
		}
	}
	return tp
}

func newClient(t *testing.T, b Backend, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Brokers()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceInputs sends records synchronously in order.
func produceInputs(t *testing.T, b Backend, topic string, recs []*kgo.Record) {
	t.Helper()
	cl := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.MaxBufferedRecords(50000), kgo.ProducerLinger(2*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush inputs: %v", err)
	}
	if firstErr != nil {
		t.Fatalf("produce inputs: %v", firstErr)
	}
}

func inputRecord(id, text string) *kgo.Record {
	v, _ := json.Marshal(map[string]string{"id": id, "text": text})
	return &kgo.Record{Key: []byte(id), Value: v}
}

// syntheticText returns a text of a random known label.
func syntheticText(rng *rand.Rand) string {
	labels := []string{"card_arrival", "refund", "exchange_rate", "lost_card"}
	l := labels[rng.IntN(4)]
	ws := make([]string, 6)
	for i := range ws {
		ws[i] = topicWords[l][rng.IntN(6)]
	}
	return strings.Join(ws, " ")
}

// outputs tallies committed records of the predictions and dead-letter
// topics as they appear, read_committed, until stopped.
type outputs struct {
	mu      sync.Mutex
	preds   map[string]int    // id -> count
	labels  map[string]string // id -> label
	dlq     map[string]int    // key -> count
	reasons map[string]string // key -> reason code
	order   map[string][]int64
	cancel  context.CancelFunc
	done    chan struct{}
}

func watchOutputs(t *testing.T, b Backend, tp topics) *outputs {
	t.Helper()
	cl := newClient(t, b, kgo.ConsumeTopics(tp.out, tp.dlq), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithCancel(context.Background())
	o := &outputs{preds: map[string]int{}, labels: map[string]string{}, dlq: map[string]int{}, reasons: map[string]string{},
		order: map[string][]int64{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				o.mu.Lock()
				defer o.mu.Unlock()
				if r.Topic == tp.dlq {
					var d struct {
						Reason struct{ Code string } `json:"reason"`
					}
					json.Unmarshal(r.Value, &d)
					o.dlq[string(r.Key)]++
					o.reasons[string(r.Key)] = d.Reason.Code
					return
				}
				var p struct {
					ID    string `json:"id"`
					Label string `json:"label"`
					Input struct {
						Partition int32 `json:"partition"`
						Offset    int64 `json:"offset"`
					} `json:"input"`
				}
				if err := json.Unmarshal(r.Value, &p); err != nil {
					o.preds["<undecodable>"]++
					return
				}
				o.preds[p.ID]++
				o.labels[p.ID] = p.Label
				k := fmt.Sprintf("%d->%d", p.Input.Partition, r.Partition)
				o.order[k] = append(o.order[k], p.Input.Offset)
			})
		}
	}()
	t.Cleanup(o.stop)
	return o
}

func (o *outputs) stop() {
	o.cancel()
	<-o.done
}

func (o *outputs) counts() (preds, dlq int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.preds), len(o.dlq)
}

// waitFor polls until preds+dlq distinct keys reach want or timeout.
func (o *outputs) waitFor(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p, d := o.counts()
		if p+d >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %d predictions + %d dead letters, want %d", p, d, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exactlyOnce checks every id in ids has exactly one prediction, no other
// prediction exists, and per input→output partition pair offsets ascend.
func (o *outputs) exactlyOnce(t *testing.T, ids []string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	missing, dups := 0, 0
	for _, id := range ids {
		switch n := o.preds[id]; {
		case n == 0:
			missing++
		case n > 1:
			dups++
		}
	}
	if missing > 0 || dups > 0 || len(o.preds) != len(ids) {
		t.Errorf("exactly-once violated: %d ids missing, %d duplicated, %d distinct predictions for %d inputs",
			missing, dups, len(o.preds), len(ids))
	}
	for k, offs := range o.order {
		for i := 1; i < len(offs); i++ {
			if offs[i] <= offs[i-1] {
				t.Errorf("partition %s: input offsets out of order: %d after %d", k, offs[i], offs[i-1])
				break
			}
		}
	}
}

// consumerProc is a `triage consumer` process.
type consumerProc struct {
	cmd  *exec.Cmd
	done chan error
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	str := s.b.String()
	return str[max(0, len(str)-n):]
}

func startConsumer(t *testing.T, b Backend, tp topics, extra ...string) *consumerProc {
	t.Helper()
	args := append([]string{"consumer", "--brokers", strings.Join(b.Brokers(), ","), "--group", tp.group,
		"--route", tp.in + "=" + cmp.Or(tp.model, modelDir), "--predictions-topic", tp.out, "--dead-letter-topic", tp.dlq,
		"--metrics-addr", "", "--ort-lib", ortLib, "--log-level", "warn"}, extra...)
	return startProc(t, args...)
}

func (p *consumerProc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil // keep Cleanup's receive from blocking
}

// stop sends SIGTERM and expects a clean exit.
func (p *consumerProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("consumer exit after SIGTERM: %v\n%s", err, p.logs.tail(2000))
		}
		p.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatalf("consumer did not stop within 30s of SIGTERM")
	}
}

// alive fails the test if the consumer exited.
func (p *consumerProc) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("consumer exited: %v\n%s", err, p.logs.tail(4000))
	default:
	}
}

// lines is a helper for kcat output.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
