// Command dashboard-lint checks Grafana dashboard JSON files: Grafana's own schema (the Grafana Foundation SDK's
// strict decoding and validation: unknown fields, wrong types and invalid values fail) and the conventions of
// grafana/dashboard-linter's rules that apply to this project's dashboards (that linter cannot be fetched from the
// Go module proxy here; the rules below carry its rule names).
//
// Usage: dashboard-lint FILE...   exit 0 clean, 1 problems found (printed one per line), 2 usage.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// A range selector of rate/irate/increase/delta/deriv whose range is not Grafana's $__rate_interval.
var fixedRange = regexp.MustCompile(`\b(rate|irate|increase)\s*\([^\[\]]*\[\s*([^\]]+?)\s*\]`)

type panel struct {
	Type        string            `json:"type"`
	Title       string            `json:"title"`
	Description string            `json:"description"`
	Datasource  *datasourceRef    `json:"datasource"`
	Targets     []target          `json:"targets"`
	FieldConfig fieldConfig       `json:"fieldConfig"`
	Panels      []json.RawMessage `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Expr       string         `json:"expr"`
	RefID      string         `json:"refId"`
	Datasource *datasourceRef `json:"datasource"`
}

type fieldConfig struct {
	Defaults struct {
		Unit string `json:"unit"`
	} `json:"defaults"`
}

type variable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
}

type document struct {
	Editable   *bool   `json:"editable"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func lint(raw []byte) []string {
	var problems []string
	add := func(rule, format string, args ...any) {
		problems = append(problems, rule+": "+fmt.Sprintf(format, args...))
	}

	var typed dashboard.Dashboard
	if err := typed.UnmarshalJSONStrict(raw); failed(err) {
		add("schema", "%v", err)
	} else if err := typed.Validate(); failed(err) {
		add("schema", "%v", err)
	}

	var doc document
	if err := json.Unmarshal(raw, &doc); err != nil {
		add("schema", "%v", err)
		return problems
	}
	if doc.Editable == nil || *doc.Editable {
		add("uneditable-dashboard", "the dashboard is provisioned: set editable to false")
	}
	hasDatasource := false
	for _, v := range doc.Templating.List {
		if v.Type == "datasource" && v.Name == "datasource" && strings.Contains(string(v.Query), "prometheus") {
			hasDatasource = true
		}
		if v.Type == "query" && !strings.HasPrefix(v.Definition, "label_values(") {
			add("template-label-promql-rule", "variable %q: query variables use label_values()", v.Name)
		}
	}
	if !hasDatasource {
		add("template-datasource-rule", "no Prometheus data source variable named datasource")
	}
	panels := doc.Panels
	for len(panels) > 0 {
		p := panels[0]
		panels = panels[1:]
		for _, nested := range p.Panels {
			var child panel
			if err := json.Unmarshal(nested, &child); err == nil {
				panels = append(panels, child)
			}
		}
		if p.Type == "row" {
			continue
		}
		name := fmt.Sprintf("panel %q", p.Title)
		if p.Title == "" || p.Description == "" {
			add("panel-title-description-rule", "%s: every panel has a title and a description", name)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			add("panel-units-rule", "%s: no unit", name)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			add("panel-datasource-rule", "%s: the data source is not ${datasource}", name)
		}
		if len(p.Targets) == 0 {
			add("panel-targets", "%s: no query", name)
		}
		for _, t := range p.Targets {
			if t.Datasource != nil && t.Datasource.UID != "${datasource}" {
				add("panel-datasource-rule", "%s query %s: the data source is not ${datasource}", name, t.RefID)
			}
			if strings.TrimSpace(t.Expr) == "" {
				add("target-promql-rule", "%s query %s: empty expression", name, t.RefID)
			}
			for _, match := range fixedRange.FindAllStringSubmatch(t.Expr, -1) {
				if match[2] != "$__rate_interval" {
					add("target-rate-interval-rule", "%s query %s: %s over [%s], not [$__rate_interval]",
						name, t.RefID, match[1], match[2])
				}
			}
		}
	}
	return problems
}

// failed: the SDK's strict decoding returns its (empty) list of errors even when there is none.
func failed(err error) bool {
	var list cog.BuildErrors
	if errors.As(err, &list) {
		return len(list) > 0
	}
	return err != nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-lint FILE...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		problems := lint(raw)
		for _, problem := range problems {
			fmt.Printf("%s: %s\n", path, problem)
		}
		if len(problems) > 0 {
			failed = true
		} else {
			fmt.Printf("%s: ok\n", path)
		}
	}
	if failed {
		os.Exit(1)
	}
}
