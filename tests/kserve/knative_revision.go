package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	netcfg "knative.dev/networking/pkg/config"
	"knative.dev/pkg/logging"
	"knative.dev/serving/pkg/apis/config"
	knservingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"knative.dev/serving/pkg/deployment"
	o11yconfigmap "knative.dev/serving/pkg/observability/configmap"
	configurationresources "knative.dev/serving/pkg/reconciler/configuration/resources"
	revisionconfig "knative.dev/serving/pkg/reconciler/revision/config"
	revisionresources "knative.dev/serving/pkg/reconciler/revision/resources"
	serviceresources "knative.dev/serving/pkg/reconciler/service/resources"
)

// newRevisionConfig is what Knative Serving's revision reconciler reads besides the webhook's configuration:
// config-deployment (the queue-proxy sidecar), config-logging and config-observability as Knative ships
// them, config-network at its defaults (knative.dev/networking's, not in Serving's config directory).
func newRevisionConfig(dir string, api *config.Config) (*revisionconfig.Config, error) {
	read := func(name string) (*corev1.ConfigMap, error) {
		cm := &corev1.ConfigMap{}
		return cm, readYAMLObject(filepath.Join(dir, name+".yaml"), cm)
	}
	cfg := &revisionconfig.Config{Config: api}
	cm, err := read("deployment")
	if err == nil {
		cfg.Deployment, err = deployment.NewConfigFromConfigMap(cm)
	}
	if err == nil {
		if cm, err = read("logging"); err == nil {
			cfg.Logging, err = logging.NewConfigFromConfigMap(cm)
		}
	}
	if err == nil {
		if cm, err = read("observability"); err == nil {
			cfg.Observability, err = o11yconfigmap.Parse(cm)
		}
	}
	if err == nil {
		cfg.Network, err = netcfg.NewConfigFromMap(nil)
	}
	return cfg, err
}

// knativeRevisionPod is the pod Knative Serving makes of a Knative Service: the Configuration its service
// reconciler writes, the Revision its configuration reconciler stamps from it (defaulted as Knative's
// webhook defaults it), and the Deployment its revision reconciler builds for that Revision, queue-proxy
// sidecar included.
func (c *cluster) knativeRevisionPod(ctx context.Context, ksvc *knservingv1.Service) (*corev1.Pod, string, error) {
	ctx = config.ToContext(ctx, c.knative.config)
	ksvc = ksvc.DeepCopy()
	ksvc.SetDefaults(ctx)
	configuration := serviceresources.MakeConfiguration(ksvc)
	configuration.Generation = 1
	revision := configurationresources.MakeRevision(ctx, configuration, time.Unix(0, 0))
	revision.SetDefaults(ctx)
	if errs := revision.Validate(ctx); errs != nil {
		return nil, "", fmt.Errorf("Knative refuses the Revision: %w", errs)
	}
	workload, err := revisionresources.MakeDeployment(revision, c.knative.revision)
	if err != nil {
		return nil, "", err
	}
	template := workload.Spec.Template
	pod := &corev1.Pod{ObjectMeta: *template.ObjectMeta.DeepCopy(), Spec: *template.Spec.DeepCopy()}
	pod.Namespace = ksvc.Namespace
	pod.GenerateName = workload.Name + "-"
	return pod, "Deployment/" + workload.Name, nil
}
