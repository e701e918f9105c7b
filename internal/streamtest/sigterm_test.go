package streamtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testSigterm starts each role alone (and all together), in each delivery
// mode, with work in flight, sends SIGTERM and requires a clean exit within
// 15 s with the consumed input committed: the group's committed offset of
// every partition is one past the last input that has an output.
func testSigterm(t *testing.T, b Backend) {
	cases := []struct{ target, delivery string }{
		{"consumer", "exactly-once"}, {"consumer", "at-least-once"},
		{"gateway", ""}, {"trainer", ""},
		{"all", "exactly-once"}, {"all", "at-least-once"},
	}
	for _, c := range cases {
		t.Run(strings.Trim(c.target+"-"+c.delivery, "-"), func(t *testing.T) {
			tp := newTopics(t, b, 3)
			reg := filepath.Join(t.TempDir(), "registry")
			brokers := strings.Join(b.Brokers(), ",")
			updates := "updates-" + tp.group
			if out, err := runTriage("models", "register", "support", modelDir, "--promote", "--registry", reg, "--brokers", brokers,
				"--updates-topic", updates, "--ort-lib", ortLib); err != nil {
				t.Fatalf("register: %v\n%s", err, out)
			}
			args := []string{"run", "--target", c.target, "--brokers", brokers, "--registry", reg, "--updates-topic", updates,
				"--ort-lib", ortLib, "--log-level", "warn", "--metrics-addr", "", "--no-auth",
				"--http-addr", "127.0.0.1:" + strconv.Itoa(freePort(t)), "--work-dir", t.TempDir(),
				"--group", tp.group, "--route", tp.in + "=support", "--predictions-topic", tp.out, "--dead-letter-topic", tp.dlq,
				"--train-requests-topic", "train-" + tp.group, "--train-status-topic", "train-status-" + tp.group,
				"--feedback-topic", "feedback-" + tp.group}
			if c.delivery != "" {
				args = append(args, "--delivery", c.delivery)
			}
			consumes := c.target == "consumer" || c.target == "all"
			var out *outputs
			if consumes {
				out = watchOutputs(t, b, tp)
			}
			p := startProc(t, args...)
			if consumes {
				rng := rand.New(rand.NewPCG(31, 32))
				var recs []*kgo.Record
				for i := range 20000 {
					recs = append(recs, inputRecord(fmt.Sprintf("term-%d", i), syntheticText(rng)))
				}
				produceInputs(t, b, tp.in, recs)
				out.waitFor(t, 1000, 90*time.Second) // mid-stream
			} else {
				time.Sleep(3 * time.Second) // started and idle
			}
			p.alive(t)
			start := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-p.done:
				p.done <- nil
				if err != nil {
					t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.tail(3000))
				}
				t.Logf("%s exited %v after SIGTERM", c.target, time.Since(start).Round(time.Millisecond))
			case <-time.After(15 * time.Second):
				t.Fatalf("%s did not exit within 15 s of SIGTERM\n%s", c.target, p.logs.tail(3000))
			}
			if !consumes {
				return
			}
			time.Sleep(500 * time.Millisecond) // let the reader catch up with the last transaction
			out.stop()
			committedMatchesWork(t, b, tp, out)
		})
	}
}

// committedMatchesWork checks that the group committed exactly up to the
// last input it produced an output for, on every partition.
func committedMatchesWork(t *testing.T, b Backend, tp topics, out *outputs) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, tp.group)
	if err != nil {
		t.Fatalf("fetch committed offsets: %v", err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	last := map[int32]int64{}
	for k, os := range out.order {
		var in int32
		fmt.Sscanf(k, "%d->", &in)
		for _, o := range os {
			last[in] = max(last[in], o+1)
		}
	}
	total := 0
	for p := range int32(3) {
		committed := int64(0)
		if o, ok := offs.Lookup(tp.in, p); ok {
			committed = o.At
		}
		if committed != last[p] {
			t.Errorf("partition %d: committed offset %d, but outputs exist up to input offset %d", p, committed, last[p]-1)
		}
		total += int(committed)
	}
	t.Logf("committed %d inputs, %d outputs", total, len(out.preds)+len(out.dlq))
}

// runTriage runs the binary to completion.
func runTriage(args ...string) ([]byte, error) {
	return exec.Command(binary, args...).CombinedOutput()
}
