package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"knative.dev/pkg/apis"
	"knative.dev/serving/pkg/apis/config"
	knservingv1 "knative.dev/serving/pkg/apis/serving/v1"
	asconfig "knative.dev/serving/pkg/autoscaler/config"
	revisionconfig "knative.dev/serving/pkg/reconciler/revision/config"
)

// knativeConfig is the configuration Knative Serving's webhook puts in the context of its defaulting and
// validation: config-defaults, config-features and config-autoscaler.
type knativeConfig struct {
	config *config.Config
	// revision: what Knative's revision reconciler reads to build a revision's Deployment
	revision *revisionconfig.Config
}

func newKnativeConfig(configMaps []*corev1.ConfigMap) (knativeConfig, error) {
	byName := map[string]*corev1.ConfigMap{}
	for _, cm := range configMaps {
		byName[cm.Name] = cm
	}
	defaults, err := config.NewDefaultsConfigFromConfigMap(byName["config-defaults"])
	if err != nil {
		return knativeConfig{}, fmt.Errorf("config-defaults: %w", err)
	}
	features, err := config.NewFeaturesConfigFromConfigMap(byName["config-features"])
	if err != nil {
		return knativeConfig{}, fmt.Errorf("config-features: %w", err)
	}
	autoscaler, err := asconfig.NewConfigFromConfigMap(byName["config-autoscaler"])
	if err != nil {
		return knativeConfig{}, fmt.Errorf("config-autoscaler: %w", err)
	}
	return knativeConfig{config: &config.Config{Defaults: defaults, Features: features, Autoscaler: autoscaler}}, nil
}

// KnativeReport is Knative Serving's verdict on a Knative Service KServe built: its webhook's defaulting,
// then its validation of a create.
type KnativeReport struct {
	Name   string `json:"name"`
	Errors string `json:"errors"`
}

func knativeService(obj runtime.Object) (*knservingv1.Service, bool) {
	ksvc, ok := obj.(*knservingv1.Service)
	return ksvc, ok
}

func (c *cluster) validateKnativeService(ctx context.Context, ksvc *knservingv1.Service) KnativeReport {
	ctx = config.ToContext(ctx, c.knative.config)
	ksvc = ksvc.DeepCopy()
	ksvc.SetDefaults(ctx)
	report := KnativeReport{Name: ksvc.Name}
	if errs := ksvc.Validate(apis.WithinCreate(ctx)); errs != nil {
		report.Errors = errs.Error()
	}
	return report
}

func metaGVK(group, version, kind string) metav1.GroupVersionKind {
	return metav1.GroupVersionKind{Group: group, Version: version, Kind: kind}
}
