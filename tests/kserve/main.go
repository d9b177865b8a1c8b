// Command kserve-harness runs KServe's own code on what the chart and manifests/ render: KServe's defaulting
// and validating webhooks, its InferenceService reconciler (controller-runtime's fake client, no API
// server), its pod mutator on the pods the reconciler's workloads would create, Kubernetes' Pod Security
// admission on those pods, and Knative Serving's own validation of the Knative Services KServe builds.
//
// It reads one JSON request on stdin (see Request) and writes one JSON report on stdout (see Report);
// tests/chart/kserve_harness.py builds it, calls it and reads the report.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	// Knative Serving's controllers run in knative-serving and read it from the downward API.
	if err := os.Setenv("SYSTEM_NAMESPACE", "knative-serving"); err != nil {
		fail(err)
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var request Request
	if err := json.Unmarshal(raw, &request); err != nil {
		fail(fmt.Errorf("request: %w", err))
	}
	report, err := run(request)
	if err != nil {
		fail(err)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", " ")
	if err := encoder.Encode(report); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kserve-harness:", err)
	os.Exit(2)
}
