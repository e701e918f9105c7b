package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/triage-ml/triage/consumer"
	"github.com/triage-ml/triage/monitor"
	"github.com/triage-ml/triage/serving"
	"github.com/triage-ml/triage/trainer"
)

// topic is one Kafka topic Triage reads or writes. Names come from the
// packages' defaults where they export one, so a renamed default shows up
// here; the rest is what README's "Streaming" and "Roles and the model
// registry" sections and internal/topics say.
type topic struct {
	name, flag, role, key, cleanup, schema, writers, readers string
}

// The input topics' defaults live in package main of cmd/triage (the
// default --route set), which cannot be imported.
const (
	supportTopic = "triage.support-queries"
	reviewsTopic = "triage.reviews"
)

func topicList() []topic {
	return []topic{
		{supportTopic, "`--route triage.support-queries=support`", "input: customer-support queries for the `support` intent model",
			"the input's `id` (producer's choice)", "delete", "input", "your producers, `triage produce`", "consumer"},
		{reviewsTopic, "`--route triage.reviews=reviews`", "input: reviews for the `reviews` sentiment model",
			"the input's `id` (producer's choice)", "delete", "input", "your producers, `triage produce`", "consumer"},
		{consumer.DefaultPredictionsTopic, "`--predictions-topic`, `--monitor-predictions-topic`", "one prediction per valid input, in the consumer's transaction",
			"the input's `id`", "delete", "prediction", "consumer", "monitor, your applications (`isolation.level=read_committed`)"},
		{consumer.DefaultDeadLetterTopic, "`--dead-letter-topic`", "rejected inputs and unusable feedback, with the original bytes and a reason code",
			"the original record's key", "delete", "dead-letter", "consumer, trainer (snapshots)", "people ([replay](../operations.md#replay-dead-letters))"},
		{monitor.DefaultFeedbackTopic, "`--feedback-topic`, `--monitor-feedback-topic`", "human labels (`POST /v1/feedback`, the review page)",
			"the label's `id`", "**compact** (created so by its producer)", "feedback", "gateway", "trainer (snapshots), monitor (true accuracy)"},
		{serving.UpdatesTopic, "`--updates-topic`", "alias moves of the model registry: what every serving process follows",
			"the model name for champion moves, `model@alias` for other aliases", "**compact**, 1 partition (created on first use)", "—",
			"`triage models`, gateway admin routes, trainer", "consumer, gateway (the `models` role)"},
		{trainer.DefaultRequestsTopic, "`--train-requests-topic`", "training jobs, when the trainer runs in another process",
			"the job id", "delete (created by the trainer)", "—", "gateway", "trainer"},
		{trainer.DefaultStatusTopic, "`--train-status-topic`", "training job status, latest per job",
			"the job id", "**compact** (created by the trainer)", "—", "trainer", "gateway (`GET /v1/train/{id}`)"},
		{consumer.DefaultReviewTopic, "`--review-topic`", "a rate-limited sample of uncertain predictions for people to label",
			"the prediction's `id`", "delete", "— (`schemas.Review`)", "consumer (same transaction as the prediction)", "gateway (`GET /v1/review`)"},
		{monitor.DefaultDriftTopic, "`--monitor-drift-topic`", "drift events: windows over a threshold",
			"the model name", "delete", "drift", "monitor", "alerting, your applications"},
	}
}

// schemaPage is one schema file's section.
type schemaPage struct {
	file string // e.g. "v1/input.schema.json"
	kind string // e.g. "input"
}

// renderTopics renders the topic list and every schema file (name relative
// to package schemas, e.g. "v1/input.schema.json") as the topics page.
func renderTopics(files map[string][]byte) (string, error) {
	var pages []schemaPage
	for f := range files {
		base := f[strings.LastIndex(f, "/")+1:]
		kind, ok := strings.CutSuffix(base, ".schema.json")
		if !ok {
			continue
		}
		pages = append(pages, schemaPage{file: f, kind: kind})
	}
	sort.Slice(pages, func(i, j int) bool { return schemaOrder(pages[i].kind) < schemaOrder(pages[j].kind) })
	known := map[string]bool{}
	for _, p := range pages {
		known[p.kind] = true
	}

	var b strings.Builder
	b.WriteString(generatedNote("the embedded schema files of package `schemas` (`schemas/v1/*.schema.json`) and the topic defaults of the consumer, monitor, serving and trainer packages"))
	b.WriteString("# Topics and schemas\n\n")
	b.WriteString("Every name below is a default; each can be changed with the flag shown (see the " +
		"[configuration reference](configuration.md)). Topics marked **compact** hold the latest record per key: " +
		"losing one loses state (see [broker loss](../operations.md#recover-from-broker-loss)). " +
		"Values are JSON. Inputs and feedback are validated against their schema (draft 2020-12) when read; " +
		"records that fail go to the dead-letter topic with a reason code. Predictions and dead letters carry the headers " +
		"`triage-kind` and `triage-schema` (e.g. `v1/prediction`), dead letters also `triage-reason`; drift events carry `triage-schema`.\n\n")
	b.WriteString("## Topics {#topics}\n\n| topic | what | key | cleanup | schema |\n|---|---|---|---|---|\n")
	for _, t := range topicList() {
		schema := t.schema
		if known[schema] {
			schema = "[" + schema + "](#schema-" + schema + ")"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", t.name, t.role, t.key, t.cleanup, schema)
	}
	b.WriteString("\n## Who writes and reads them {#flow}\n\n| topic | written by | read by | renamed with |\n|---|---|---|---|\n")
	for _, t := range topicList() {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", t.name, t.writers, t.readers, t.flag)
	}
	b.WriteString("\nTopics without a creator above are created by the broker's auto-creation or by you, with the " +
		"partition count you want: partitions bound how many consumers share the input (see [scaling](../operations.md#scale-consumers)). " +
		"`triage dev`'s embedded broker creates them with `--partitions` (3).\n\n")

	b.WriteString("## Record schemas {#schemas}\n\n")
	sr := schemaRenderer{}
	for _, p := range pages {
		v, err := parseOrdered(files[p.file])
		if err != nil {
			return "", fmt.Errorf("%s: %w", p.file, err)
		}
		s, ok := v.(*omap)
		if !ok {
			return "", fmt.Errorf("%s: not a JSON object", p.file)
		}
		title := s.str("title")
		if title == "" {
			title = p.kind
		}
		fmt.Fprintf(&b, "### %s {#schema-%s}\n\n", inline(title, false), p.kind)
		fmt.Fprintf(&b, "File `schemas/%s`, `$id` `%s`.\n\n", p.file, s.str("$id"))
		if d := s.str("description"); d != "" {
			b.WriteString(inline(d, false) + "\n\n")
		}
		b.WriteString(sr.table(s) + "\n")
		if ex := s.arr("examples"); len(ex) > 0 {
			b.WriteString("Examples are in the raw schema's `examples`.\n\n")
		}
		pretty, err := prettyJSON(files[p.file])
		if err != nil {
			return "", fmt.Errorf("%s: %w", p.file, err)
		}
		fmt.Fprintf(&b, "??? note \"Raw schema: %s\"\n\n    ```json\n%s    ```\n\n", p.file, indent(pretty, "    "))
	}
	return b.String(), nil
}

// schemaOrder puts the schemas in the order a record travels; unknown
// kinds go last, by name.
func schemaOrder(kind string) string {
	for i, k := range []string{"input", "prediction", "dead-letter", "feedback", "drift"} {
		if k == kind {
			return fmt.Sprint(i)
		}
	}
	return "9" + kind
}
