// Package topics creates the Kafka topics Triage owns with the settings
// their use needs, e.g. compaction for topics keyed by an entity whose
// latest record is all that matters (model updates, feedback, job status).
package topics

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureCompacted creates topic with cleanup.policy=compact and the
// broker's default partitions (-1) or the given count, unless it exists.
// Where the app may not create topics, an existing one is accepted.
func EnsureCompacted(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, partitions, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	if td, lerr := adm.ListTopics(ctx, topic); lerr == nil && td.Has(topic) && td[topic].Err == nil {
		return nil
	}
	return fmt.Errorf("create compacted topic %s: %w", topic, err)
}
