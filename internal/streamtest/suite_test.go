package streamtest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runSuite is the one streaming suite every backend must pass.
func runSuite(t *testing.T, b Backend, crashMessages int) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, b, "") })
	t.Run("RoundTripHybrid", func(t *testing.T) { testRoundTrip(t, b, hybridDir) })
	t.Run("AtLeastOnce", func(t *testing.T) { testAtLeastOnce(t, b) })
	t.Run("KcatInterop", func(t *testing.T) { testKcat(t, b) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, b) })
	t.Run("ScaleOut", func(t *testing.T) { testScaleOut(t, b) })
	t.Run("Crash", func(t *testing.T) { testCrash(t, b, crashMessages) })
	swapMessages := 100000
	if v, err := strconv.Atoi(os.Getenv("TRIAGE_SWAP_MESSAGES")); err == nil && v > 0 {
		swapMessages = v
	}
	t.Run("Swap", func(t *testing.T) { testSwap(t, b, swapMessages) })
	t.Run("Sigterm", func(t *testing.T) { testSigterm(t, b) })
}

func testRoundTrip(t *testing.T, b Backend, model string) {
	tp := newTopics(t, b, 3)
	tp.model = model
	out := watchOutputs(t, b, tp)
	c := startConsumer(t, b, tp)
	const n = 2000
	var recs []*kgo.Record
	var ids []string
	want := map[string]string{}
	texts := make([]string, 0, len(knownTexts))
	for text := range knownTexts {
		texts = append(texts, text)
	}
	for i := range n {
		id := fmt.Sprintf("rt-%d", i)
		text := texts[i%len(texts)]
		ids = append(ids, id)
		want[id] = knownTexts[text]
		recs = append(recs, inputRecord(id, text))
	}
	produceInputs(t, b, tp.in, recs)
	// A bound on waiting, not a speed test: the hybrid model's encoder runs
	// 2,000 texts in ~10 s here alone, several times longer on a shared CPU,
	// and predictions appear a transaction (1,000 records) at a time.
	out.waitFor(t, n, 3*time.Minute)
	c.stop(t) // graceful: SIGTERM commits and exits 0
	time.Sleep(200 * time.Millisecond)
	out.exactlyOnce(t, ids)
	out.mu.Lock()
	defer out.mu.Unlock()
	wrong := 0
	for id, l := range want {
		if out.labels[id] != l {
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d known texts got the wrong label", wrong, n)
	}
}

// testAtLeastOnce runs the optional plain-commit mode through a kill: no
// input may be lost (duplicates are allowed by that mode's contract).
func testAtLeastOnce(t *testing.T, b Backend) {
	tp := newTopics(t, b, 3)
	out := watchOutputs(t, b, tp)
	const n = 5000
	rng := rand.New(rand.NewPCG(13, 14))
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, inputRecord(fmt.Sprintf("alo-%d", i), syntheticText(rng)))
	}
	produceInputs(t, b, tp.in, recs)
	args := []string{"--delivery", "at-least-once", "--instance-id", "alo"}
	c := startConsumer(t, b, tp, args...)
	out.waitFor(t, n/3, 60*time.Second)
	c.kill(t)
	c = startConsumer(t, b, tp, args...)
	out.waitFor(t, n, 60*time.Second)
	c.alive(t)
	out.mu.Lock()
	defer out.mu.Unlock()
	for i := range n {
		if out.preds[fmt.Sprintf("alo-%d", i)] == 0 {
			t.Fatalf("alo-%d lost in at-least-once mode", i)
		}
	}
}

func testKcat(t *testing.T, b Backend) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat not found: install it (apt-get install kcat); .ci/run does")
	}
	tp := newTopics(t, b, 1)
	c := startConsumer(t, b, tp)
	var in bytes.Buffer
	ids := []string{"kcat-1", "kcat-2", "kcat-3"}
	texts := []string{"my card has not arrived, still waiting for the delivery", "I want my refund, the merchant returned the money", "{not json"}
	for i, id := range ids {
		fmt.Fprintf(&in, "%s\t", id)
		if i < 2 {
			fmt.Fprintf(&in, `{"id":%q,"text":%q}`+"\n", id, texts[i])
		} else {
			fmt.Fprintf(&in, "%s\n", texts[i])
		}
	}
	prod := exec.Command(kcat, "-P", "-b", strings.Join(b.Brokers(), ","), "-t", tp.in, "-K", "\t")
	prod.Stdin = &in
	if outp, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, outp)
	}
	read := func(topic string, n int) []string {
		deadline := time.Now().Add(60 * time.Second)
		for {
			cmd := exec.Command(kcat, "-C", "-b", strings.Join(b.Brokers(), ","), "-t", topic, "-o", "beginning", "-e",
				"-X", "isolation.level=read_committed", "-f", "%k\t%s\n")
			outp, err := cmd.Output()
			if err != nil {
				t.Fatalf("kcat consume %s: %v", topic, err)
			}
			if ls := lines(string(outp)); len(ls) >= n || time.Now().After(deadline) {
				return ls
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	preds := read(tp.out, 2)
	if len(preds) != 2 {
		t.Fatalf("kcat read %d predictions, want 2: %q", len(preds), preds)
	}
	got := strings.Join(preds, "\n")
	for _, w := range []string{`kcat-1	{"id":"kcat-1"`, `"label":"card_arrival"`, `kcat-2	{"id":"kcat-2"`, `"label":"refund"`} {
		if !strings.Contains(got, w) {
			t.Errorf("kcat predictions lack %q:\n%s", w, got)
		}
	}
	dl := read(tp.dlq, 1)
	if len(dl) != 1 || !strings.HasPrefix(dl[0], "kcat-3\t") || !strings.Contains(dl[0], `"code":"invalid_json"`) {
		t.Errorf("kcat dead letters = %q, want kcat-3 with invalid_json", dl)
	}
	c.alive(t)
}

// badKinds are malformed inputs and the reason each must be filed under.
var badKinds = []struct {
	reason string
	value  func(id string) []byte
}{
	{"invalid_json", func(id string) []byte { return []byte(`{"id":"` + id + `","text":`) }},
	{"schema_violation", func(id string) []byte { return []byte(`{"text":"no id here"}`) }},
	{"schema_violation", func(id string) []byte { return []byte(`{"id":"` + id + `","text":42}`) }},
	{"empty_text", func(id string) []byte { return []byte(`{"id":"` + id + `","text":"   \t "}`) }},
	{"invalid_utf8", func(id string) []byte { return append([]byte(`{"id":"`+id+`","text":"bad `), 0xff, 0xfe, '"', '}') }},
	{"text_too_long", func(id string) []byte {
		return []byte(`{"id":"` + id + `","text":"` + strings.Repeat("a", 70<<10) + `"}`)
	}},
}

func testBadInput(t *testing.T, b Backend) {
	tp := newTopics(t, b, 3)
	out := watchOutputs(t, b, tp)
	c := startConsumer(t, b, tp)
	const n = 10000
	rng := rand.New(rand.NewPCG(7, 8))
	var recs []*kgo.Record
	var goodIDs []string
	wantReason := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("good-%d", i)
		goodIDs = append(goodIDs, id)
		recs = append(recs, inputRecord(id, syntheticText(rng)))
		bad := fmt.Sprintf("bad-%d", i)
		k := badKinds[i%len(badKinds)]
		wantReason[bad] = k.reason
		recs = append(recs, &kgo.Record{Key: []byte(bad), Value: k.value(bad)})
	}
	produceInputs(t, b, tp.in, recs)
	out.waitFor(t, 2*n, 120*time.Second)
	c.alive(t)
	time.Sleep(200 * time.Millisecond)
	out.exactlyOnce(t, goodIDs)
	out.mu.Lock()
	defer out.mu.Unlock()
	if len(out.dlq) != n {
		t.Errorf("%d dead letters, want %d", len(out.dlq), n)
	}
	wrong := map[string]int{}
	for key, want := range wantReason {
		if out.dlq[key] != 1 {
			wrong["count:"+want]++
		} else if got := out.reasons[key]; got != want {
			wrong[want+"->"+got]++
		}
	}
	if len(wrong) > 0 {
		t.Errorf("dead letters with wrong count or reason: %v", wrong)
	}
}

func testScaleOut(t *testing.T, b Backend) {
	tp := newTopics(t, b, 6)
	out := watchOutputs(t, b, tp)
	const n = 20000
	rng := rand.New(rand.NewPCG(9, 10))
	var recs []*kgo.Record
	var ids []string
	for i := range n {
		id := fmt.Sprintf("so-%d", i)
		ids = append(ids, id)
		recs = append(recs, inputRecord(id, syntheticText(rng)))
	}
	// Slow batches (size 8) keep the first consumer busy when the second joins.
	first := startConsumer(t, b, tp, "--batch-max", "8", "--max-poll-records", "64")
	produceInputs(t, b, tp.in, recs[:n/2])
	out.waitFor(t, n/10, 60*time.Second)
	second := startConsumer(t, b, tp, "--batch-max", "8", "--max-poll-records", "64")
	produceInputs(t, b, tp.in, recs[n/2:])

	// Both members must own partitions once the group settles.
	adm := kadm.NewClient(newClient(t, b))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		groups, err := adm.DescribeGroups(ctx, tp.group)
		cancel()
		if err == nil {
			g := groups[tp.group]
			owning := 0
			for _, m := range g.Members {
				if ca, ok := m.Assigned.AsConsumer(); ok && len(ca.Topics) > 0 && len(ca.Topics[0].Partitions) > 0 {
					owning++
				}
			}
			if g.State == "Stable" && owning == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group never settled with two members owning partitions: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out.waitFor(t, n, 120*time.Second)
	first.alive(t)
	second.alive(t)
	time.Sleep(200 * time.Millisecond)
	out.exactlyOnce(t, ids)
}

func testCrash(t *testing.T, b Backend, n int) {
	tp := newTopics(t, b, 3)
	out := watchOutputs(t, b, tp)
	rng := rand.New(rand.NewPCG(11, 12))
	var recs []*kgo.Record
	var ids []string
	for i := range n {
		id := fmt.Sprintf("crash-%d", i)
		ids = append(ids, id)
		recs = append(recs, inputRecord(id, syntheticText(rng)))
	}
	produceInputs(t, b, tp.in, recs)
	// A stable instance id, as a StatefulSet would give: each restart fences
	// the killed process's open transaction and takes its partitions back.
	c := startConsumer(t, b, tp, "--instance-id", "crashy")
	for i, frac := range []float64{0.2, 0.45, 0.7} {
		out.waitFor(t, int(float64(n)*frac), 5*time.Minute)
		c.kill(t)
		t.Logf("SIGKILLed consumer %d at %d predictions", i+1, func() int { p, _ := out.counts(); return p }())
		if i == 1 {
			b.RestartBroker(t)
			t.Logf("restarted broker")
		}
		c = startConsumer(t, b, tp, "--instance-id", "crashy")
	}
	out.waitFor(t, n, 5*time.Minute)
	c.alive(t)
	time.Sleep(500 * time.Millisecond) // let any stray duplicate surface before judging
	out.exactlyOnce(t, ids)
}
