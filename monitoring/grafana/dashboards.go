// Package grafana builds Triage's Grafana dashboards as code (grafana-foundation-sdk)
// and renders them to the JSON files Grafana provisions from
// monitoring/grafana/dashboards/. The JSON is generated, never edited: change
// this file, then run
//
//	go generate ./monitoring/grafana
//
// A test fails when the committed JSON differs from what this code builds.
// Expressions lists every panel's PromQL so the live test
// (monitoring/livetest) can run each one against a real Prometheus.
package grafana

//go:generate go run ./cmd/gen-dashboards -out dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// DatasourceUID is the uid of the Prometheus data source the provisioning file
// (provisioning/datasources/prometheus.yml) creates; the dashboards' data
// source variable defaults to it.
const DatasourceUID = "triage-prometheus"

// Every panel queries through the ${datasource} variable, so one dashboard
// file works against any Prometheus data source a Grafana has.
var promDS = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// q is one query of a panel: PromQL and its legend.
type q struct {
	expr, legend string
}

// targets turns queries into SDK targets with refIds A, B, C, ...
func targets(qs []q) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, x := range qs {
		b := prometheus.NewDataqueryBuilder().
			Expr(x.expr).
			RefId(string(rune('A' + i))).
			Datasource(promDS)
		if x.legend != "" {
			b.LegendFormat(x.legend)
		}
		out = append(out, b)
	}
	return out
}

func legend() *common.VizLegendOptionsBuilder {
	return common.NewVizLegendOptionsBuilder().
		DisplayMode(common.LegendDisplayModeList).
		Placement(common.LegendPlacementBottom).
		ShowLegend(true)
}

// step is one threshold: from value at on, colour color.
type step struct {
	at    float64
	color string
}

// steps is a threshold list: the base colour, then each step upwards.
func steps(base string, up ...step) *dashboard.ThresholdsConfigBuilder {
	s := []dashboard.Threshold{{Color: base}}
	for _, u := range up {
		s = append(s, dashboard.Threshold{Value: cog.ToPtr(u.at), Color: u.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(s)
}

// graph is a time-series panel, half the dashboard's width.
func graph(title, description, unit string, qs ...q) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS).
		Unit(unit).
		Span(12).
		Height(8).
		FillOpacity(10).
		Legend(legend()).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	for _, t := range targets(qs) {
		p.WithTarget(t)
	}
	return p
}

// withLine draws the thresholds as lines on a graph (SLO targets, alert
// thresholds), so a reader sees where the alert would fire.
func withLine(p *timeseries.PanelBuilder, th *dashboard.ThresholdsConfigBuilder) *timeseries.PanelBuilder {
	return p.Thresholds(th).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
}

// single is a stat panel, a quarter of the width.
func single(title, description, unit string, qs ...q) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS).
		Unit(unit).
		Span(6).
		Height(5).
		GraphMode(common.BigValueGraphModeArea).
		ColorMode(common.BigValueColorModeValue).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
	for _, t := range targets(qs) {
		p.WithTarget(t)
	}
	return p
}

// infoTable is a full-width table of an instant query's series labels.
func infoTable(title, description string, x q) *table.PanelBuilder {
	t := prometheus.NewDataqueryBuilder().
		Expr(x.expr).
		RefId("A").
		Datasource(promDS).
		Instant().
		Format(prometheus.PromQueryFormatTable)
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS).
		Span(24).
		Height(7).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"count"})).
		// The labels are the content; Time and the constant Value are noise.
		WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": map[string]bool{"Time": true, "Value": true}},
		}).
		WithTarget(t)
}

// bucketHeatmap shows a histogram's buckets over time (format heatmap: Grafana
// de-accumulates the le buckets itself).
func bucketHeatmap(title, description, unit, expr string) *heatmap.PanelBuilder {
	t := prometheus.NewDataqueryBuilder().
		Expr(expr).
		RefId("A").
		Datasource(promDS).
		LegendFormat("{{le}}").
		Format(prometheus.PromQueryFormatHeatmap)
	return heatmap.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS).
		Span(12).
		Height(8).
		Calculate(false).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit(unit)).
		Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true)).
		WithTarget(t)
}

func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

// variable is a multi-value query variable over one label of one metric;
// "All" matches anything (allValue .*), so panels filter with =~"$name".
func variable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Datasource(promDS).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{String: cog.ToPtr("All")},
			Value:    dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")},
		}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

func datasourceVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").
		Label("Data source").
		Type("prometheus").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("Prometheus (Triage)")},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(DatasourceUID)},
		})
}

// base is what every Triage dashboard shares: uid, tags, time range, refresh,
// a shared crosshair, the data source and job variables, and links to the
// other Triage dashboards.
func base(uid, title, description, jobQuery string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"triage"}).
		Editable().
		Time("now-1h", "now").
		Refresh("30s").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(datasourceVariable()).
		WithVariable(variable("job", "Job", jobQuery)).
		Link(dashboard.NewDashboardLinkBuilder("Triage").
			Type(dashboard.DashboardLinkTypeDashboards).
			Icon("external link").
			Tooltip("Other Triage dashboards").
			Tags([]string{"triage"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
}

// Rate windows use Grafana's $__rate_interval (at least four scrape
// intervals), so panels work at any scrape interval and zoom level.
const rateInterval = "[$__rate_interval]"

// quantile is histogram_quantile over a histogram's rate, summed by the given
// labels and le.
func quantile(phi, bucket, selector, by string) string {
	byLabels := "le"
	if by != "" {
		byLabels = by + ", le"
	}
	return fmt.Sprintf("histogram_quantile(%s, sum by (%s) (rate(%s{%s}%s)))", phi, byLabels, bucket, selector, rateInterval)
}

func gatewayDashboard() *dashboard.DashboardBuilder {
	sel := `job=~"$job"`
	return base("triage-gateway", "Triage / Gateway",
		"REST gateway, RED: request rate, errors and duration by route; the predict latency SLO.",
		"label_values(triage_gateway_requests_total, job)").
		WithRow(row("Rate and errors")).
		WithPanel(graph("Requests by route", "Requests per second by route pattern.", "reqps",
			q{`sum by (route) (rate(triage_gateway_requests_total{` + sel + `}` + rateInterval + `))`, "{{route}}"})).
		WithPanel(graph("Requests by status code", "Requests per second by HTTP status code, all routes.", "reqps",
			q{`sum by (code) (rate(triage_gateway_requests_total{` + sel + `}` + rateInterval + `))`, "{{code}}"})).
		WithPanel(withLine(graph("5xx ratio",
			"Share of requests answered 5xx (0 while there are none). Dashed line: the TriageGateway5xxHigh threshold (5%).", "percentunit",
			q{`(sum(rate(triage_gateway_requests_total{` + sel + `, code=~"5.."}` + rateInterval + `)) or vector(0))` +
				` / sum(rate(triage_gateway_requests_total{` + sel + `}` + rateInterval + `))`, "5xx"}),
			steps("green", step{0.05, "red"}))).
		WithPanel(graph("Client errors (4xx) by route and code",
			"Requests per second answered 4xx: bad requests, unknown models, missing keys, rate limits.", "reqps",
			q{`sum by (route, code) (rate(triage_gateway_requests_total{` + sel + `, code=~"4.."}` + rateInterval + `))`, "{{route}} {{code}}"})).
		WithPanel(graph("Rate-limited requests by API key", "Requests refused with 429, per second, by API key name.", "reqps",
			q{`sum by (key) (rate(triage_gateway_rate_limited_total{` + sel + `}` + rateInterval + `))`, "{{key}}"})).
		WithPanel(graph("Texts per inference call", "Mean texts per model call; above 1 when dynamic batching coalesces concurrent requests.", "short",
			q{`sum by (model) (rate(triage_gateway_batch_size_sum{` + sel + `}` + rateInterval + `)) / sum by (model) (rate(triage_gateway_batch_size_count{` + sel + `}` + rateInterval + `))`, "{{model}}"})).
		WithRow(row("Duration")).
		WithPanel(graph("p50 latency by route", "Median request duration by route pattern.", "s",
			q{quantile("0.5", "triage_gateway_request_duration_seconds_bucket", sel, "route"), "{{route}}"})).
		WithPanel(withLine(graph("p99 latency by route", "99th percentile request duration by route pattern. Dashed line: the predict SLO's 250 ms.", "s",
			q{quantile("0.99", "triage_gateway_request_duration_seconds_bucket", sel, "route"), "{{route}}"}),
			steps("green", step{0.25, "red"}))).
		WithRow(row("Predict latency SLO: 99% of POST /v1/predict under 250 ms")).
		WithPanel(withLine(graph("Predict requests under 250 ms",
			"Share of POST /v1/predict requests answered within 250 ms. Dashed line: the 99% objective.", "percentunit",
			q{`sum(rate(triage_gateway_request_duration_seconds_bucket{` + sel + `, route="/v1/predict", le="0.25"}` + rateInterval + `))` +
				` / sum(rate(triage_gateway_request_duration_seconds_count{` + sel + `, route="/v1/predict"}` + rateInterval + `))`, "under 250 ms"}),
			steps("red", step{0.99, "green"}))).
		WithPanel(withLine(graph("Error budget burn rate",
			"How fast slow predictions spend the 1% budget (1 = exactly the budget over 30 days), from the recording rules the burn-rate alerts use. Dashed lines: 6x and 14.4x, the fast-burn alert's thresholds.", "x",
			q{`job:triage_gateway_predict_slow_requests:ratio_rate5m{` + sel + `} / 0.01`, "5m {{job}}"},
			q{`job:triage_gateway_predict_slow_requests:ratio_rate1h{` + sel + `} / 0.01`, "1h {{job}}"},
			q{`job:triage_gateway_predict_slow_requests:ratio_rate6h{` + sel + `} / 0.01`, "6h {{job}}"}),
			steps("green", step{6, "orange"}, step{14.4, "red"})))
}

func consumerDashboard() *dashboard.DashboardBuilder {
	sel := `job=~"$job"`
	return base("triage-consumer", "Triage / Consumer",
		"Kafka consumers: throughput by topic and outcome, lag, micro-batches, inference time, dead letters and transactions.",
		"label_values(triage_consumer_records_total, job)").
		WithRow(row("Throughput and lag")).
		WithPanel(graph("Records by topic and outcome", "Input records handled per second: predicted or dead-lettered.", "rps",
			q{`sum by (topic, outcome) (rate(triage_consumer_records_total{` + sel + `}` + rateInterval + `))`, "{{topic}} {{outcome}}"})).
		WithPanel(withLine(graph("Lag by topic", "Records behind the high watermark, summed over partitions. Dashed line: TriageConsumerLagGrowing's 1000.", "short",
			q{`sum by (topic) (triage_consumer_lag_records{` + sel + `})`, "{{topic}}"}),
			steps("green", step{1000, "orange"}))).
		WithPanel(graph("Lag by partition", "Records behind the high watermark per partition: one hot partition shows here.", "short",
			q{`sum by (topic, partition) (triage_consumer_lag_records{` + sel + `})`, "{{topic}}/{{partition}}"})).
		WithPanel(graph("In-flight records", "Records polled and not yet committed.", "short",
			q{`sum by (instance) (triage_consumer_inflight_records{` + sel + `})`, "{{instance}}"})).
		WithRow(row("Dead letters")).
		WithPanel(graph("Dead letters by reason", "Records sent to the dead-letter topic per second, by reason code.", "rps",
			q{`sum by (reason) (rate(triage_consumer_dead_letters_total{` + sel + `}` + rateInterval + `))`, "{{reason}}"})).
		WithPanel(withLine(graph("Dead-letter ratio", "Share of input records dead-lettered (0 before the first). Dashed line: TriageDeadLetterRateHigh's 5%.", "percentunit",
			q{`(sum(rate(triage_consumer_dead_letters_total{` + sel + `}` + rateInterval + `)) or vector(0))` +
				` / sum(rate(triage_consumer_records_total{` + sel + `}` + rateInterval + `))`, "dead letters"}),
			steps("green", step{0.05, "red"}))).
		WithRow(row("Batches and transactions")).
		WithPanel(graph("Records per micro-batch", "Inference micro-batch size: median, 99th percentile and mean.", "short",
			q{quantile("0.5", "triage_consumer_batch_records_bucket", sel, ""), "p50"},
			q{quantile("0.99", "triage_consumer_batch_records_bucket", sel, ""), "p99"},
			q{`sum(rate(triage_consumer_batch_records_sum{` + sel + `}` + rateInterval + `)) / sum(rate(triage_consumer_batch_records_count{` + sel + `}` + rateInterval + `))`, "mean"})).
		WithPanel(graph("Transactions by result", "Kafka transactions (or at-least-once commits) per second, by result.", "ops",
			q{`sum by (result) (rate(triage_consumer_transactions_total{` + sel + `}` + rateInterval + `))`, "{{result}}"})).
		WithPanel(graph("Inference time per micro-batch", "Featurise + ONNX Runtime time per micro-batch.", "s",
			q{quantile("0.5", "triage_consumer_inference_duration_seconds_bucket", sel, ""), "p50"},
			q{quantile("0.99", "triage_consumer_inference_duration_seconds_bucket", sel, ""), "p99"})).
		WithPanel(graph("End-to-end latency", "From the input record's timestamp to its prediction being produced.", "s",
			q{quantile("0.5", "triage_consumer_end_to_end_latency_seconds_bucket", sel, ""), "p50"},
			q{quantile("0.99", "triage_consumer_end_to_end_latency_seconds_bucket", sel, ""), "p99"})).
		WithRow(row("Other events")).
		WithPanel(graph("Poll errors, truncations, review offers, abstentions",
			"Per second: fetch errors from the Kafka client; texts longer than the model window (classified on their beginning); predictions offered for human review; predictions the model abstained on (out of scope).", "ops",
			q{`sum(rate(triage_consumer_poll_errors_total{` + sel + `}` + rateInterval + `))`, "poll errors"},
			q{`sum(rate(triage_consumer_truncated_total{` + sel + `}` + rateInterval + `))`, "truncated"},
			q{`sum(rate(triage_consumer_review_offered_total{` + sel + `}` + rateInterval + `))`, "offered for review"},
			q{`sum(rate(triage_consumer_abstained_total{` + sel + `}` + rateInterval + `))`, "abstained"}))
}

func inferenceDashboard() *dashboard.DashboardBuilder {
	sel := `job=~"$job"`
	return base("triage-inference", "Triage / ONNX Runtime inference",
		"Model inference time: consumer micro-batches, per record, gateway predictions, batch sizes, model load and warm-up.",
		"label_values(triage_consumer_inference_duration_seconds_count, job)").
		WithRow(row("Consumer micro-batches")).
		WithPanel(graph("Inference time per micro-batch", "Featurise + ONNX Runtime per micro-batch: p50, p90, p99.", "s",
			q{quantile("0.5", "triage_consumer_inference_duration_seconds_bucket", sel, ""), "p50"},
			q{quantile("0.9", "triage_consumer_inference_duration_seconds_bucket", sel, ""), "p90"},
			q{quantile("0.99", "triage_consumer_inference_duration_seconds_bucket", sel, ""), "p99"})).
		WithPanel(graph("Inference time per record", "Inference seconds divided by records classified: the cost of one text, whatever the batch size.", "s",
			q{`sum(rate(triage_consumer_inference_duration_seconds_sum{` + sel + `}` + rateInterval + `)) / sum(rate(triage_consumer_batch_records_sum{` + sel + `}` + rateInterval + `))`, "per record"})).
		WithPanel(bucketHeatmap("Inference time distribution", "Micro-batches per inference-time bucket.", "s",
			`sum by (le) (increase(triage_consumer_inference_duration_seconds_bucket{`+sel+`}`+rateInterval+`))`)).
		WithPanel(graph("Records per micro-batch", "Mean micro-batch size: larger batches amortise each ONNX Runtime call.", "short",
			q{`sum(rate(triage_consumer_batch_records_sum{` + sel + `}` + rateInterval + `)) / sum(rate(triage_consumer_batch_records_count{` + sel + `}` + rateInterval + `))`, "mean"})).
		WithRow(row("Gateway")).
		WithPanel(graph("Predict latency", "POST /v1/predict duration (HTTP, queueing for a dynamic batch, inference): p50 and p99.", "s",
			q{quantile("0.5", "triage_gateway_request_duration_seconds_bucket", sel+`, route="/v1/predict"`, ""), "p50"},
			q{quantile("0.99", "triage_gateway_request_duration_seconds_bucket", sel+`, route="/v1/predict"`, ""), "p99"})).
		WithPanel(graph("Texts per gateway inference call", "p50 and p99 of texts per model call, by model.", "short",
			q{quantile("0.5", "triage_gateway_batch_size_bucket", sel, "model"), "p50 {{model}}"},
			q{quantile("0.99", "triage_gateway_batch_size_bucket", sel, "model"), "p99 {{model}}"})).
		WithRow(row("Model loading")).
		WithPanel(single("Load + warm-up time", "Mean time to open and warm a model version before it is swapped in, over the dashboard's range.", "s",
			q{`sum by (model) (increase(triage_serving_load_duration_seconds_sum{` + sel + `}[$__range])) / sum by (model) (increase(triage_serving_load_duration_seconds_count{` + sel + `}[$__range]))`, "{{model}}"}))
}

func driftDashboard() *dashboard.DashboardBuilder {
	sel := `job=~"$job", model=~"$model", topic=~"$topic"`
	return base("triage-drift", "Triage / Drift",
		"The monitor's per-window view of each served model: label PSI, estimated accuracy, confidence, out-of-vocabulary rate, drift verdicts.",
		"label_values(triage_monitor_windows_total, job)").
		WithVariable(variable("model", "Model", `label_values(triage_monitor_windows_total{job=~"$job"}, model)`)).
		WithVariable(variable("topic", "Topic", `label_values(triage_monitor_windows_total{job=~"$job", model=~"$model"}, topic)`)).
		WithRow(row("Verdicts")).
		WithPanel(graph("Drift (last window)", "1 while the last window of a model version on a topic drifted, else 0 (what TriageDriftDetected watches).", "short",
			q{`max by (model, version, topic) (triage_monitor_drift{` + sel + `})`, "{{model}} {{version}} {{topic}}"}).
			Min(0).Max(1)).
		WithPanel(single("Drift events", "Windows flagged as drifted over the dashboard's range.", "short",
			q{`sum by (model, topic) (increase(triage_monitor_drift_events_total{` + sel + `}[$__range]))`, "{{model}} {{topic}}"}).
			Thresholds(steps("green", step{1, "orange"}))).
		WithPanel(single("Windows evaluated", "Monitor windows closed per minute.", "short",
			q{`sum by (model, topic) (rate(triage_monitor_windows_total{` + sel + `}` + rateInterval + `)) * 60`, "{{model}} {{topic}}"})).
		WithRow(row("Signals")).
		WithPanel(withLine(graph("Label distribution PSI", "Population stability index of predicted labels against the training distribution. Dashed lines: 0.1 (moderate) and 0.25 (large shift).", "short",
			q{`max by (model, version, topic) (triage_monitor_label_psi{` + sel + `})`, "{{model}} {{version}} {{topic}}"}),
			steps("green", step{0.1, "orange"}, step{0.25, "red"}))).
		WithPanel(withLine(graph("Estimated accuracy", "The monitor's label-free accuracy estimate. Dashed line: TriageEstimatedAccuracyLow's 70%.", "percentunit",
			q{`min by (model, version, topic) (triage_monitor_estimated_accuracy{` + sel + `})`, "{{model}} {{version}} {{topic}}"}).
			Min(0).Max(1),
			steps("red", step{0.7, "green"}))).
		WithPanel(graph("Mean confidence", "Mean top-1 probability per window.", "percentunit",
			q{`avg by (model, version, topic) (triage_monitor_confidence_mean{` + sel + `})`, "{{model}} {{version}} {{topic}}"}).
			Min(0).Max(1)).
		WithPanel(graph("Out-of-vocabulary rate", "Share of tokens the model's vocabulary does not know, per window.", "percentunit",
			q{`max by (model, version, topic) (triage_monitor_oov_rate{` + sel + `})`, "{{model}} {{version}} {{topic}}"}).
			Min(0))
}

func modelsDashboard() *dashboard.DashboardBuilder {
	sel := `job=~"$job"`
	return base("triage-models", "Triage / Model versions",
		"Which model version each process serves, swaps and load failures, and training jobs.",
		"label_values(triage_serving_model_info, job)").
		WithRow(row("Serving")).
		WithPanel(infoTable("Versions served", "One row per process and model: the version it serves now (triage_serving_model_info). Two versions of one model mean a rollout in progress or a process that failed to swap.",
			q{`max by (job, instance, model, version) (triage_serving_model_info{` + sel + `})`, ""})).
		WithPanel(graph("Processes per version", "How many processes serve each model version: a promotion shows as one line handing over to another.", "short",
			q{`count by (model, version) (triage_serving_model_info{` + sel + `})`, "{{model}} {{version}}"})).
		WithPanel(graph("Swaps", "Model versions swapped in (first load included), per interval.", "short",
			q{`sum by (model) (increase(triage_serving_swaps_total{` + sel + `}` + rateInterval + `))`, "{{model}}"}).
			DrawStyle(common.GraphDrawStyleBars)).
		WithPanel(single("Load failures", "Versions that failed to load or warm up over the range (the old version kept serving). 0 for every served model until a first failure creates the counter.", "short",
			q{`sum by (model) (increase(triage_serving_load_failures_total{` + sel + `}[$__range])) or sum by (model) (triage_serving_model_info{` + sel + `}) * 0`, "{{model}}"}).
			Thresholds(steps("green", step{1, "red"}))).
		WithPanel(single("Swaps in range", "Versions swapped in over the dashboard's range.", "short",
			q{`sum by (model) (increase(triage_serving_swaps_total{` + sel + `}[$__range]))`, "{{model}}"})).
		WithRow(row("Training")).
		WithPanel(graph("Training jobs finished", "Training jobs per interval, by outcome.", "short",
			q{`sum by (outcome) (increase(triage_trainer_jobs_total{` + sel + `}` + rateInterval + `))`, "{{outcome}}"}).
			DrawStyle(common.GraphDrawStyleBars)).
		WithPanel(graph("Training queue", "Training jobs waiting for a worker.", "short",
			q{`sum(triage_trainer_queue_jobs{` + sel + `})`, "queued"}))
}

func elasticsearchDashboard() *dashboard.DashboardBuilder {
	sel := `job=~"$job"`
	return base("triage-elasticsearch", "Triage / Elasticsearch shipping",
		"Documents shipped to Elasticsearch: indexed, failed and dropped by kind; the shipper's buffer; reachability.",
		"label_values(triage_elasticsearch_documents_total, job)").
		WithRow(row("Documents")).
		WithPanel(graph("Documents by kind and result", "Documents per second: indexed, failed (rejected by Elasticsearch) or dropped (buffer full).", "ops",
			q{`sum by (kind, result) (rate(triage_elasticsearch_documents_total{` + sel + `}` + rateInterval + `))`, "{{kind}} {{result}}"})).
		WithPanel(graph("Failed and dropped", "Documents lost to the index per second, by kind (what TriageElasticsearchDroppingDocuments watches).", "ops",
			q{`sum by (kind, result) (rate(triage_elasticsearch_documents_total{` + sel + `, result=~"failed|dropped"}` + rateInterval + `))`, "{{kind}} {{result}}"})).
		WithPanel(graph("Buffered documents", "Documents waiting in the shipper's buffer; a full buffer drops.", "short",
			q{`sum by (instance) (triage_elasticsearch_buffer_documents{` + sel + `})`, "{{instance}}"})).
		WithPanel(single("Elasticsearch reachable", "1 when the last request reached Elasticsearch, per process.", "short",
			q{`min by (instance) (triage_elasticsearch_up{` + sel + `})`, "{{instance}}"}).
			Thresholds(steps("red", step{1, "green"}))).
		WithPanel(single("Dropped in range", "Documents dropped over the dashboard's range.", "short",
			q{`sum(increase(triage_elasticsearch_documents_total{` + sel + `, result="dropped"}[$__range]))`, "dropped"}).
			Thresholds(steps("green", step{1, "red"})))
}

// builders lists every dashboard, in the order files and expressions are
// reported.
func builders() []*dashboard.DashboardBuilder {
	return []*dashboard.DashboardBuilder{
		gatewayDashboard(),
		consumerDashboard(),
		inferenceDashboard(),
		driftDashboard(),
		modelsDashboard(),
		elasticsearchDashboard(),
	}
}

// Dashboards builds every Triage dashboard, with panel ids numbered in
// layout order (Grafana needs them unique within a dashboard; the SDK leaves
// them unset).
func Dashboards() ([]dashboard.Dashboard, error) {
	var out []dashboard.Dashboard
	for _, b := range builders() {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("build dashboard: %w", err)
		}
		var id uint32
		for i := range d.Panels {
			id++
			switch p := d.Panels[i]; {
			case p.Panel != nil:
				p.Panel.Id = cog.ToPtr(id)
			case p.RowPanel != nil:
				p.RowPanel.Id = id
				for j := range p.RowPanel.Panels {
					id++
					p.RowPanel.Panels[j].Id = cog.ToPtr(id)
				}
			}
		}
		out = append(out, d)
	}
	return out, nil
}
